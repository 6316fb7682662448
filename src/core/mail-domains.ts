/**
 * Mail domains for threading (src/router/threading.ts). A shared domain says who someone is only
 * at an organisation's own domain: at a public mail service anyone can sign up. This list can
 * never be complete, so nothing safe depends on it: a colleague joins a ticket by its subject
 * token only at a domain the operator declared (`router.colleagueDomains`), and the list keeps
 * the well-known services out of that declaration (the config refuses them).
 */
import { z } from 'zod';

/** The domain of an address, lower case; undefined without one. */
export function domainOf(address: string): string | undefined {
  const at = address.lastIndexOf('@');
  const domain = at > 0 ? address.slice(at + 1).trim().toLowerCase() : '';
  return domain || undefined;
}

/** Well-known public mail services, where a shared domain proves nothing. */
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

export function isPublicMailDomain(domain: string): boolean {
  return PUBLIC_MAIL_DOMAINS.has(domain.trim().toLowerCase());
}

/**
 * `router.colleagueDomains`: customer organisations' own mail domains. Written lower case; a
 * public service is refused (anyone can have an address there), and so is anything that is not
 * a bare domain name (an address, a wildcard, a URL).
 */
export const ColleagueDomains = z
  .array(
    z
      .string()
      .transform((d) => d.trim().toLowerCase())
      .refine((d) => /^(?=.{1,253}$)([a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z0-9-]{2,63}$/.test(d), {
        error: (iss) => `"${String(iss.input)}" is not a domain name (e.g. romashka.ru: the part after "@", no wildcards)`,
      })
      .refine((d) => !PUBLIC_MAIL_DOMAINS.has(d), {
        error: (iss) => `"${String(iss.input)}" is a public mail service: anyone can have an address there, so it says nothing about who someone is`,
      }),
  )
  .default([]);
