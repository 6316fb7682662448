/**
 * The journal encodes a routed message's log entry once for the log and its event (journal.ts):
 * the payloads must be exactly what JSON.stringify of the whole objects gives (docs/events.md).
 */
import { describe, expect, it } from 'vitest';
import type { Bus } from '../../src/core/bus.js';
import type { LogEntry, Ticket } from '../../src/core/schema.js';
import { HEAD_BEYOND_RECORD, Journal } from '../../src/router/journal.js';
import { TooLargeError } from '../../src/router/payload-limit.js';
import { chatMessage } from '../helpers/events.js';

function recorder() {
  const sent: Array<{ subject: string; text: string; msgID?: string }> = [];
  const bus = {
    pipe: {
      publish: (subject: string, data: string | Uint8Array, o?: { msgID?: string }) => {
        sent.push({ subject, text: typeof data === 'string' ? data : new TextDecoder().decode(data), msgID: o?.msgID });
        return Promise.resolve({ stream: 'S', seq: sent.length, duplicate: false });
      },
    },
  } as unknown as Bus;
  return { sent, journal: new Journal(bus) };
}

const ticket = {
  id: 'T-7', number: 7, channel: 'webhook', account: 'site', status: 'open',
  conversation: { id: 'chat «1»', kind: 'private' },
  contact: { id: 'u1', displayName: 'Покупатель "x"\n😀\u2028', handles: {} },
  lastDelivery: undefined,
} as unknown as Ticket;

describe('journal payloads', () => {
  it('log entry and event are byte for byte JSON.stringify of the whole objects', async () => {
    const { sent, journal } = recorder();
    const entry: LogEntry = { kind: 'inbound', at: new Date().toISOString(), event: chatMessage({ chat: 'c', text: 'Здравствуйте! 😀 "кавычки" \\ \u2028' }), match: { rule: 'open-conversation', value: 'c' } };
    await journal.append('T-7', entry, 'e1');
    await journal.emit('ticket.message', ticket, 'e1', entry);
    await journal.emit('ticket.created', { ...ticket, lastDelivery: { status: 'sent', outboundId: 'o', at: entry.at } }, 'e1', entry);
    await journal.emit('ticket.status', ticket, 'e2');
    expect(sent[0]).toEqual({ subject: 'omni.ticket.T-7.log', text: JSON.stringify(entry), msgID: 'log:e1' });
    const parsed = (s: (typeof sent)[number] | undefined) => ({ ...s!, event: JSON.parse(s!.text) as Record<string, unknown> });
    const [message, created, status] = [parsed(sent[1]), parsed(sent[2]), parsed(sent[3])];
    const whole = (type: string, t: Ticket, cause: string, at: unknown, e?: LogEntry) =>
      JSON.stringify({ v: 1, type, id: `${type}:${cause}`, ticketId: t.id, ticketNumber: t.number, channel: t.channel, account: t.account, status: t.status, at, conversation: t.conversation, contact: t.contact, lastDelivery: t.lastDelivery, entry: e });
    expect(message.text).toBe(whole('ticket.message', ticket, 'e1', message.event.at, entry));
    expect(message.msgID).toBe('ticket.message:e1');
    expect(created.text).toBe(whole('ticket.created', { ...ticket, lastDelivery: { status: 'sent', outboundId: 'o', at: entry.at } }, 'e1', created.event.at, entry));
    expect(status.text).toBe(whole('ticket.status', ticket, 'e2', status.event.at));
    expect(status.event).not.toHaveProperty('entry');
  });
});

describe('measuring an event before the ticket update (too_large)', () => {
  const entry: LogEntry = { kind: 'inbound', at: new Date().toISOString(), event: chatMessage({ chat: 'c', text: 'Добрый день' }), match: { rule: 'open-conversation', value: 'c' } };
  const entries = [{ causeId: 'e1', entry }];
  // The smallest record a head can come from (nothing beside what the head repeats), with the
  // longest status, and every event type that carries an entry.
  const bare = { ...ticket, status: 'resolved', failedReplies: true } as unknown as Ticket;

  it('the head holds at most HEAD_BEYOND_RECORD bytes beyond the ticket record it repeats', async () => {
    const { sent, journal } = recorder();
    const causeId = 'e1';
    for (const type of ['ticket.created', 'ticket.message', 'ticket.rating'] as const) await journal.emit(type, bare, `status:reopen:${causeId}`, entry);
    const record = Buffer.byteLength(JSON.stringify(bare));
    for (const s of sent) {
      const beyond = Buffer.byteLength(s.text) - record - Buffer.byteLength(JSON.stringify(entry)) - Buffer.byteLength(causeId);
      // ~120 bytes: under half the constant the bound uses, so a change of the head that eats the margin fails here.
      expect(beyond).toBeLessThan(HEAD_BEYOND_RECORD / 2);
    }
  });

  it('with the record\'s size, decides without encoding the head; near the limit, measures the head itself', () => {
    const { journal } = recorder();
    const head = Buffer.byteLength(JSON.stringify({ ...bare, v: 1, type: 'ticket.message', id: '', ticketId: 'T-7', at: entry.at }));
    const exact = head + Buffer.byteLength(JSON.stringify(entry)) + 200;
    // A record far over the event (fields the head does not carry): the head is measured, and fits.
    expect(() => journal.assertEventsFit(bare, entries, exact, exact * 10)).not.toThrow();
    // Without the record's size: measured, fits; with a limit under the event: refused either way.
    expect(() => journal.assertEventsFit(bare, entries, exact)).not.toThrow();
    for (const recordBytes of [undefined, 10, exact * 10]) {
      const err = (() => {
        try {
          journal.assertEventsFit(bare, entries, head, recordBytes);
        } catch (x) {
          return x;
        }
      })();
      expect(err).toBeInstanceOf(TooLargeError);
      expect((err as TooLargeError).write).toBe('ticket event');
    }
  });
});
