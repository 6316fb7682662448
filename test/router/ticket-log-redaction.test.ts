/**
 * readTicketLog (every reader of a ticket's log goes through it: the API's ticket and log views,
 * the person export, eviction) applies an erasure's redactions to whatever part of the log it
 * reads: the first `limit` entries, or a page from a later sequence. The redaction entries come
 * at the log's end, after that part; before the redaction index, a reader applied only those it
 * had read, and showed the erased address. Here `limit` is small so the page ends early; the
 * API test (test/api/erasure-cc-long-log.test.ts) goes through the real 10,000.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Bus } from '../../src/core/bus.js';
import { createLogger } from '../../src/core/logger.js';
import { Eraser } from '../../src/core/erasure.js';
import { redactOtherLogs } from '../../src/core/erasure-scrub.js';
import { redactionIndexKey } from '../../src/core/redaction-index.js';
import { LogEntry } from '../../src/core/schema.js';
import { Subjects } from '../../src/core/subjects.js';
import { readTicketLog } from '../../src/router/ticket-log.js';
import { emailMessage } from '../helpers/events.js';
import { startNats, type TestNats } from '../helpers/nats-server.js';

const at = '2026-12-07T10:00:00.000Z';
const IVAN = 'ivan.petrov@mail.ru';
const names = (text: string) => text.includes(IVAN);

let nats: TestNats;
let bus: Bus;
beforeAll(async () => {
  nats = await startNats();
  bus = await Bus.connect({ url: nats.url, replicas: 1, duplicateWindowMs: 120_000, retentionMs: 86_400_000, dedupTtlMs: 86_400_000, leaseTtlMs: 5_000 }, createLogger({ level: 'silent' }));
  await bus.provision();
}, 60_000);
afterAll(async () => {
  await bus?.close();
  await nats?.stop();
});

const mail = (n: number) => LogEntry.parse({
  kind: 'inbound', at, match: { rule: 'new-ticket', value: 'x' },
  event: emailMessage({ messageId: `<olga-${n}@bk.ru>`, from: 'olga@bk.ru', text: `Письмо ${n}`, cc: [`Иван Петров <${IVAN}>`, 'buh@romashka.ru'] }),
});
const filler = (n: number) => ({ kind: 'escalation', at, id: `esc-${n}`, reason: 'no_answer', target: 'lead', outcome: 'delivered' });

async function append(ticketId: string, entry: unknown): Promise<number> {
  return (await bus.js.publish(Subjects.ticketLog(ticketId), JSON.stringify(entry))).seq;
}

const shown = (log: Array<{ entry: LogEntry }>) => JSON.stringify(log.map((l) => l.entry));

describe('redactions applied to any part of a ticket log', () => {
  it('reaches the first page and a later page, read before and after the erasure', async () => {
    const first = await append('T-1', mail(1));
    for (let i = 0; i < 20; i++) await append('T-1', filler(i));
    const middle = await append('T-1', mail(2));
    for (let i = 20; i < 40; i++) await append('T-1', filler(i));

    const firstPage = () => readTicketLog(bus, 'T-1', { limit: 5 });
    const laterPage = () => readTicketLog(bus, 'T-1', { fromSeq: middle - 2, limit: 5 });
    // Read before the erasure (whoever asked holds these pages): the address is there.
    expect(shown(await firstPage())).toContain(IVAN);
    expect(shown(await laterPage())).toContain(IVAN);

    expect(await redactOtherLogs(bus, names, new Set(), 'erasure-1')).toBe(2);
    for (const [name, page, seq] of [['first', firstPage, first], ['later', laterPage, middle]] as const) {
      const log = await page();
      expect(log, name).toHaveLength(5);
      expect(shown(log), name).not.toContain(IVAN);
      const target = log.find((l) => l.seq === seq)!.entry;
      expect(target.kind === 'inbound' && target.event.email?.cc, name).toEqual(['buh@romashka.ru']);
    }
    // The whole log as before: each redaction applied once, its entries not shown.
    const whole = await readTicketLog(bus, 'T-1');
    expect(whole).toHaveLength(42);
    expect(shown(whole)).not.toContain(IVAN);

    // Erased again: the index keeps each position once, and Olga's other addresses stay.
    expect(await redactOtherLogs(bus, names, new Set(), 'erasure-2')).toBe(2);
    const index = JSON.parse((await bus.kv.threads.get(redactionIndexKey('T-1')))!.string());
    expect(index.redactions).toEqual([{ seq: first, fields: [{ field: 'cc', index: 0 }] }, { seq: middle, fields: [{ field: 'cc', index: 0 }] }]);
    const again = (await firstPage()).find((l) => l.seq === first)!.entry;
    expect(again.kind === 'inbound' && again.event.email?.cc).toEqual(['buh@romashka.ru']);
  });

  it('goes with the ticket when the ticket itself is erased', async () => {
    await append('T-2', mail(3));
    await redactOtherLogs(bus, names, new Set(), 'erasure-3');
    expect(await bus.kv.threads.get(redactionIndexKey('T-2'))).toBeTruthy();
    await new Eraser(bus, createLogger({ level: 'silent' })).erase({ ticketIds: ['T-2'], identities: ['olga@bk.ru'] }, { reason: 'api', requestedBy: 'test' });
    const after = await bus.kv.threads.get(redactionIndexKey('T-2'));
    expect(!after || after.operation !== 'PUT').toBe(true);
    expect(await readTicketLog(bus, 'T-2')).toEqual([]);
  });

  it('stays gone when an erasure of someone else, redacting that log, writes its index after the purge', async () => {
    await append('T-3', mail(4));
    // Erasure A (of T-3) starts once erasure B (of Ivan, who was Cc'd on T-3) has read T-3's mail,
    // and B writes its index only after A is done: the order in which B's write used to win.
    let erasing: Promise<unknown> | undefined;
    const namesIvan = (text: string) => {
      const hit = names(text);
      if (hit && text.includes('olga-4@bk.ru')) erasing ??= new Eraser(bus, createLogger({ level: 'silent' })).erase({ ticketIds: ['T-3'], identities: ['olga@bk.ru'] }, { reason: 'api', requestedBy: 'test' });
      return hit;
    };
    const threads = bus.kv.threads;
    const behindA = new Proxy(threads, {
      get: (t, p) => (p === 'get' ? async (key: string) => (await erasing, t.get(key)) : (Reflect.get(t, p, t) as unknown)),
    });
    const busB = new Proxy(bus, { get: (t, p) => (p === 'kv' ? { ...t.kv, threads: behindA } : Reflect.get(t, p, t)) });
    const redacted = await redactOtherLogs(busB, namesIvan, new Set(), 'erasure-4');
    expect(erasing).toBeDefined();
    await erasing;
    const after = await bus.kv.threads.get(redactionIndexKey('T-3'));
    expect(after?.operation ?? 'none').not.toBe('PUT');
    expect(redacted).toBe(2); // T-1's two mails (above); none for T-3
    expect(await readTicketLog(bus, 'T-3')).toEqual([]);
  });
});
