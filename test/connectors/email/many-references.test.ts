/**
 * A mail with tens of thousands of References (anyone can send one: 500 KB of header) against a
 * real Dovecot and the whole gateway. It cost the router one or two KV reads per reference
 * (60,000: ~25 s for one mail) and held the event loop for ~9 s while the ticket's reference
 * chain was merged (a quadratic scan), freezing the API and the probes with it. Asserted: threading
 * reads only the newest MAX_REFERENCES_CONSULTED, the event loop is never held for seconds, the
 * mail still joins the ticket its newest reference names, and the event keeps every reference.
 */
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { describe, expect, it } from 'vitest';
import { MAX_REFERENCES_CONSULTED } from '../../../src/router/threading.js';
import { mailboxGateway } from './harness.js';
import { plainMail, uniqueId } from './mails.js';

const CRLF = '\r\n';
const REFERENCES = 60_000;

/** `n` short Message-IDs, folded eight to a line as a mailer would. */
function foldedReferences(n: number, last: string): string {
  const ids = Array.from({ length: n }, (_, i) => `<${i.toString(36)}@a>`);
  ids.push(last);
  const lines: string[] = [];
  for (let i = 0; i < ids.length; i += 8) lines.push(ids.slice(i, i + 8).join(' '));
  return lines.join(CRLF + ' ');
}

describe('a mail naming 60,000 References', () => {
  const rig = mailboxGateway();

  it('is threaded by its newest references only, without holding the event loop, and keeps them all', async () => {
    const from = 'Ольга Смирнова <olga@client.example.ru>';
    const first = uniqueId('first');
    await rig.world.imap.append('INBOX', plainMail({ from, messageId: first, subject: 'Не проходит оплата' }));
    const opened = await rig.gw.waitForEvent((e) => e.type === 'ticket.message' && (e.entry as any)?.event?.email?.messageId === first);

    const store = rig.gw.gateway.router!.store;
    const lookup = store.lookup.bind(store);
    let lookups = 0;
    store.lookup = (...args: Parameters<typeof lookup>) => {
      lookups++;
      return lookup(...args);
    };
    const delay = monitorEventLoopDelay({ resolution: 20 });
    delay.enable();
    try {
      const many = uniqueId('many');
      await rig.world.imap.append('INBOX', plainMail({ from, messageId: many, subject: 'Re: Не проходит оплата', references: foldedReferences(REFERENCES, first) }));
      const joined = await rig.gw.waitForEvent((e) => e.type === 'ticket.message' && (e.entry as any)?.event?.email?.messageId === many, 120_000);
      expect(joined.ticketId).toBe(opened.ticketId);
      expect((joined.entry as any).match).toMatchObject({ rule: 'email-references' });
      expect((joined.entry as any).event.email.references).toHaveLength(REFERENCES + 1);
      const ticket = await rig.gw.ticket(opened.ticketId);
      expect(ticket!.emailReferences).toHaveLength(20);
      expect(ticket!.emailReferences.at(-1)).toBe(many);

      // None of them names a mail we know: every one consulted was read before a ticket of its own was opened.
      lookups = 0;
      const stranger = uniqueId('stranger');
      await rig.world.imap.append('INBOX', plainMail({ from: 'fuzz@other.example.com', messageId: stranger, subject: 'refs', references: foldedReferences(REFERENCES, '<none@a>') }));
      const own = await rig.gw.waitForEvent((e) => e.type === 'ticket.message' && (e.entry as any)?.event?.email?.messageId === stranger, 120_000);
      expect(own.ticketId).not.toBe(opened.ticketId);
      expect.soft(lookups).toBeLessThanOrEqual(2 * MAX_REFERENCES_CONSULTED + 10);
      delay.disable();
      // Seconds on the old code (a quadratic merge of the chain per mail); the machine's own hiccups stay well below.
      expect.soft(delay.max / 1e6).toBeLessThan(3000);
    } finally {
      delay.disable();
      store.lookup = lookup;
    }
  }, 180_000);
});
