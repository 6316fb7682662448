/**
 * check-config's warning for a mail server reached without TLS: `secure: false` with
 * `starttls: false` is meant for a relay on the gateway's own host, and was accepted silently for
 * any host — customers' mail and the login crossing the network in clear.
 */
import { isIP } from 'node:net';

interface Link {
  host: string;
  secure: boolean;
  starttls: boolean;
}

function loopback(host: string): boolean {
  const h = host.toLowerCase().replace(/^\[|\]$/g, '');
  if (h === 'localhost' || h.endsWith('.localhost') || h === '::1') return true;
  return isIP(h) === 4 && h.startsWith('127.');
}

export function plaintextWarnings(mailboxes: Array<{ address: string; imap: Link; smtp: Link }>): string[] {
  const out: string[] = [];
  for (const [i, m] of mailboxes.entries()) {
    for (const side of ['imap', 'smtp'] as const) {
      const link = m[side];
      if (link.secure || link.starttls || loopback(link.host)) continue;
      out.push(
        `mailboxes[${i}].${side}: no TLS to ${link.host} (secure: false, starttls: false): customers' mail${side === 'imap' ? ' and the login' : ''} cross the network in clear; ` +
          'set starttls: true (or secure: true), unless that host is a relay you trust on your own network',
      );
    }
  }
  return out;
}
