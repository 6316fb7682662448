/**
 * The journal encodes a routed message's log entry once for the log and its event (journal.ts):
 * the payloads must be exactly what JSON.stringify of the whole objects gives (docs/events.md).
 */
import { describe, expect, it } from 'vitest';
import type { Bus } from '../../src/core/bus.js';
import type { LogEntry, Ticket } from '../../src/core/schema.js';
import { Journal } from '../../src/router/journal.js';
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
