/**
 * Mail domains for threading (src/router/threading.ts). A shared domain says who someone is only
 * at an organisation's own domain: at a public mail service anyone can sign up. This list can
 * never be complete, so nothing safe depends on it: a colleague joins a ticket by its subject
 * token only at a domain the operator declared (`router.colleagueDomains`), and the list keeps
 * the well-known services out of that declaration (the config refuses them).
 */
import { domainToASCII, domainToUnicode } from 'node:url';
import { z } from 'zod';

/**
 * The domain of an address as written, lower case: what follows the last "@". Undefined without
 * an "@", with nothing before it or after it: "support" is no address, and its domain is not
 * "support". The one helper for the router and the email connector.
 */
export function domainOf(address: string): string | undefined {
  const at = address.lastIndexOf('@');
  const domain = at > 0 ? address.slice(at + 1).trim().toLowerCase() : '';
  return domain || undefined;
}

/**
 * A domain as it is compared: its ASCII form (IDNA, what DNS and most mailers use: "компания.рф"
 * is "xn--80aqeigdi5k.xn--p1ai"), lower case, without the trailing dot of a fully qualified name.
 * One customer writes from ivan@компания.рф, another mailer sends the same address as
 * ivan@xn--80aqeigdi5k.xn--p1ai; both are the same domain. Undefined when it does not convert
 * (not a host name: "ivan@x.ru", "https://x.ru", a broken "xn--" label).
 */
export function asciiDomain(domain: string): string | undefined {
  const name = domain.trim().replace(/\.$/, '');
  const ascii = name && domainToASCII(name);
  // Node 24's domainToASCII passes a label "xn--zz" through that Node 20 refuses: a punycode label
  // counts only when it decodes to something that encodes back to it.
  return ascii && ascii.split('.').every(decodes) ? ascii : undefined;
}

function decodes(label: string): boolean {
  if (!label.startsWith('xn--')) return true;
  const unicode = domainToUnicode(label);
  return unicode !== label && domainToASCII(unicode) === label;
}

/** The domain of an address as it is compared (asciiDomain); undefined without one. */
export function mailDomainOf(address: string): string | undefined {
  const domain = domainOf(address);
  return domain === undefined ? undefined : asciiDomain(domain);
}

/** Well-known public mail services, where a shared domain proves nothing. In their ASCII form (asciiDomain): an IDN one is written "xn--…". */
export const PUBLIC_MAIL_DOMAINS: ReadonlySet<string> = new Set([
  // Google, Microsoft, Apple, Yahoo, AOL, Zoho
  'gmail.com', 'googlemail.com',
  'outlook.com', 'outlook.de', 'outlook.fr', 'outlook.ru', 'hotmail.com', 'hotmail.co.uk', 'hotmail.de', 'hotmail.fr', 'live.com', 'live.ru', 'live.de', 'live.co.uk', 'msn.com',
  'icloud.com', 'me.com', 'mac.com',
  'yahoo.com', 'yahoo.co.uk', 'yahoo.de', 'yahoo.fr', 'ymail.com', 'rocketmail.com', 'aol.com',
  'zoho.com', 'zohomail.com',
  // Yandex
  'yandex.ru', 'ya.ru', 'yandex.com', 'yandex.by', 'yandex.kz', 'yandex.ua', 'narod.ru',
  // Mail.ru group
  'mail.ru', 'bk.ru', 'inbox.ru', 'list.ru', 'internet.ru', 'mail.ua',
  // Rambler
  'rambler.ru', 'rambler.ua', 'myrambler.ru', 'lenta.ru', 'autorambler.ru', 'ro.ru',
  // Other Russian and CIS services
  'e1.ru', 'ngs.ru', 'qip.ru', 'pochta.ru', 'tut.by', 'ukr.net', 'i.ua', 'bigmir.net', 'meta.ua', 'mail.kz',
  // Proton, GMX, WEB.DE, others
  'proton.me', 'pm.me', 'protonmail.com', 'protonmail.ch',
  'gmx.com', 'gmx.net', 'gmx.de', 'gmx.at', 'gmx.ch', 'web.de', 't-online.de', 'freenet.de',
  'mail.com', 'tutanota.com', 'tuta.io', 'fastmail.com', 'hey.com', 'yopmail.com',
]);

/** Whether a domain, written any way (upper case, a trailing dot, fullwidth, "xn--" or not), is a public mail service. */
export function isPublicMailDomain(domain: string): boolean {
  const ascii = asciiDomain(domain);
  return ascii !== undefined && PUBLIC_MAIL_DOMAINS.has(ascii);
}

/** Labels of letters, digits and inner hyphens ("xn--" ones included), a last one of two or more. */
const DOMAIN_NAME = /^(?=.{1,253}$)([a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z0-9-]{2,63}$/;

/**
 * `router.colleagueDomains`: customer organisations' own mail domains, kept in their ASCII form
 * (asciiDomain) so one comparison serves a domain written in Cyrillic or as "xn--", any case,
 * with a trailing dot. A public service is refused (anyone can have an address there), and so is
 * anything that is not a bare domain name (an address, a wildcard, a URL) or does not convert.
 */
export const ColleagueDomains = z
  .array(
    z
      .string()
      .transform((written, ctx) => {
        const d = written.trim();
        const ascii = asciiDomain(d);
        if (ascii === undefined || !DOMAIN_NAME.test(ascii)) {
          ctx.addIssue({ code: 'custom', input: written, message: `"${d}" is not a domain name (e.g. romashka.ru or компания.рф: the part after "@", no wildcards)` });
          return z.NEVER;
        }
        if (PUBLIC_MAIL_DOMAINS.has(ascii)) {
          ctx.addIssue({ code: 'custom', input: written, message: `"${d}" is a public mail service: anyone can have an address there, so it says nothing about who someone is` });
          return z.NEVER;
        }
        return ascii;
      }),
  )
  .default([]);
