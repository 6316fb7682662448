/**
 * What the receiving mail server found about a mail's From: its Authentication-Results header
 * (RFC 8601), read into the verdict the router acts on (EmailMeta.authentication). The gateway
 * checks no SPF, DKIM or DMARC itself: it reads what the MTA in front of the mailbox wrote.
 *
 * Which header counts. Each server prepends its own header, so the receiving MTA's is above any
 * the sender wrote into the mail; a sender can add headers below it, never above. So:
 *  - with `trustedAuthServIds` set, the topmost header whose authserv-id is listed counts, and
 *    both its pass and its fail are believed;
 *  - without it, the topmost header counts only to refuse: a forged "fail" hurts only the forger,
 *    while a "pass" could be the sender's own words (an MTA that writes no header of its own).
 *
 * The verdict, kept simple: `fail` is dmarc=fail, or, with no dmarc pass or fail, spf fail or
 * softfail and no dkim=pass whose domain is aligned with the From's; `pass` is dmarc=pass, or
 * with no dmarc pass or fail, dkim=pass aligned with the From, or spf=pass for an aligned
 * envelope sender; else `none`. "Aligned": the same domain, or one a subdomain of the other (a
 * stand-in for DMARC's organisational domain, which needs the public-suffix list).
 */
import type { ParsedMail } from 'mailparser';
import type { EmailAuthentication } from '../../core/schema.js';

export interface AuthenticationPolicy {
  /** Lower case; empty: nothing is trusted to vouch for a sender. */
  trustedAuthServIds: readonly string[];
  requireAuthenticatedSender: boolean;
}

interface AuthResult {
  method: string;
  result: string;
  props: Map<string, string>;
}

interface AuthHeader {
  /** Absent when the header names no server (Microsoft 365 writes none). */
  authServId?: string;
  results: AuthResult[];
}

/** The verdict for `mail` from `fromAddress` under the account's policy; undefined when there is nothing to say. */
export function authenticationOf(mail: ParsedMail, fromAddress: string, policy: AuthenticationPolicy): EmailAuthentication | undefined {
  const trusted = policy.trustedAuthServIds.length > 0;
  const counted = countedHeader(mail, trusted ? policy.trustedAuthServIds : undefined);
  const required = trusted && policy.requireAuthenticatedSender ? { required: true as const } : {};
  if (!counted) return trusted ? { verdict: 'none', ...required } : undefined;
  const found = judge(counted.results, fromAddress.slice(fromAddress.lastIndexOf('@') + 1).toLowerCase());
  // An untrusted pass proves nothing: said as `none`, with what the header claimed kept beside it.
  const verdict = found.verdict === 'pass' && !trusted ? 'none' : found.verdict;
  return {
    verdict,
    ...(counted.authServId ? { by: counted.authServId } : {}),
    trusted,
    ...(found.dmarc ? { dmarc: found.dmarc } : {}),
    ...(found.spf ? { spf: found.spf } : {}),
    ...(found.dkim ? { dkim: found.dkim } : {}),
    ...required,
  };
}

/** The topmost header, or the topmost one of a listed server; parsed one by one (a mail may carry thousands). */
function countedHeader(mail: ParsedMail, listed: readonly string[] | undefined): AuthHeader | undefined {
  for (const h of mail.headerLines) {
    if (h.key !== 'authentication-results') continue;
    const header = parseAuthenticationResults(valueOf(h.line));
    if (!listed || (header.authServId !== undefined && listed.includes(header.authServId))) return header;
  }
  return undefined;
}

function judge(results: AuthResult[], fromDomain: string): Omit<EmailAuthentication, 'trusted' | 'by' | 'required'> {
  const first = (method: string) => results.find((r) => r.method === method);
  const dmarc = first('dmarc')?.result;
  const spf = first('spf');
  const dkims = results.filter((r) => r.method === 'dkim');
  const alignedDkim = dkims.some((r) => r.result === 'pass' && aligned(dkimDomain(r), fromDomain));
  // A signature of another domain (the forger's own) vouches for nothing about this From.
  const dkim = alignedDkim ? 'pass' : dkims.find((r) => r.result !== 'pass')?.result ?? (dkims.length > 0 ? 'unaligned' : undefined);
  const alignedSpf = spf?.result === 'pass' && aligned(domainOfProp(spf.props.get('smtp.mailfrom') ?? spf.props.get('smtp.mail')), fromDomain);
  let verdict: EmailAuthentication['verdict'] = 'none';
  if (dmarc === 'fail') verdict = 'fail';
  else if (dmarc === 'pass') verdict = 'pass';
  else if ((spf?.result === 'fail' || spf?.result === 'softfail') && !alignedDkim) verdict = 'fail';
  else if (alignedDkim || alignedSpf) verdict = 'pass';
  return { verdict, ...(dmarc ? { dmarc } : {}), ...(spf ? { spf: spf.result } : {}), ...(dkim ? { dkim } : {}) };
}

function dkimDomain(r: AuthResult): string | undefined {
  return r.props.get('header.d')?.toLowerCase() ?? domainOfProp(r.props.get('header.i'));
}

/** `ivan@romashka.ru`, `@romashka.ru` or `romashka.ru` → romashka.ru. */
function domainOfProp(value: string | undefined): string | undefined {
  if (!value) return undefined;
  return value.slice(value.lastIndexOf('@') + 1).replace(/\.$/, '').toLowerCase() || undefined;
}

function aligned(domain: string | undefined, fromDomain: string): boolean {
  if (!domain || !fromDomain) return false;
  return domain === fromDomain || domain.endsWith(`.${fromDomain}`) || (fromDomain.endsWith(`.${domain}`) && domain.includes('.'));
}

/** The header's value, unfolded, without its name. */
function valueOf(line: string): string {
  return line.slice(line.indexOf(':') + 1).replace(/\r?\n[ \t]/g, ' ');
}

/** RFC 8601 `authserv-id [version]; method=result [reason=...] ptype.prop=value ...; ...`, comments dropped. */
export function parseAuthenticationResults(value: string): AuthHeader {
  const segments = withoutComments(value).split(';').map((s) => s.trim());
  const head = segments[0] ?? '';
  // A header with no server name starts with its first result (Microsoft 365's does).
  const named = !head.includes('=');
  // Printable ASCII only: it is said in the ticket log, and no configured name is anything else.
  const word = named ? head.split(/\s+/)[0]?.toLowerCase() : undefined;
  const authServId = word && /^[\x21-\x7e]{1,255}$/.test(word) ? word : undefined;
  const results: AuthResult[] = [];
  for (const segment of named ? segments.slice(1) : segments) {
    const [first, ...rest] = segment.split(/\s+/).filter(Boolean);
    const m = /^([a-z0-9_-]+)(?:\/\d+)?=([a-z]+)$/i.exec(first ?? '');
    if (!m) continue; // `none` (no result), or what the header's writer invented
    const props = new Map<string, string>();
    for (const p of rest) {
      const eq = p.indexOf('=');
      if (eq > 0) props.set(p.slice(0, eq).toLowerCase(), unquote(p.slice(eq + 1)));
    }
    results.push({ method: m[1]!.toLowerCase(), result: m[2]!.toLowerCase().slice(0, 16), props });
  }
  return { ...(authServId ? { authServId } : {}), results };
}

/** Drops (comments), nested ones too, outside quoted strings: Gmail's and Yandex's hold `:`, `=` and `,`. */
function withoutComments(value: string): string {
  let out = '';
  let depth = 0;
  let quoted = false;
  for (let i = 0; i < value.length; i++) {
    const c = value[i]!;
    if (c === '\\' && (quoted || depth > 0)) {
      if (depth === 0) out += c + (value[i + 1] ?? '');
      i++;
      continue;
    }
    if (quoted) {
      out += c;
      if (c === '"') quoted = false;
    } else if (c === '(') depth++;
    else if (c === ')' && depth > 0) depth--;
    else if (depth === 0) {
      if (c === '"') quoted = true;
      out += c;
    }
  }
  return out;
}

function unquote(v: string): string {
  return v.startsWith('"') && v.endsWith('"') && v.length >= 2 ? v.slice(1, -1).replace(/\\(.)/g, '$1') : v;
}
