/**
 * An erasure's purge of the thread index against a router's `rebind`, interleaved by hand through
 * the bus the eraser is given: the erasure scans the index (a binding names the erased ticket), the
 * customer writes again before the purge (the router finds the binding naming a removed ticket
 * and moves it to a new ticket), then the purge runs. The moved binding must survive it: before, the purge deleted it, and the
 * customer's next message opened a third ticket (the conversation split from its new ticket).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createLogger } from '../../src/core/logger.js';
import { Eraser } from '../../src/core/erasure.js';
import { Buckets } from '../../src/core/subjects.js';
import { scanStream } from '../../src/core/stream-scan.js';
import { startApiHarness, type ApiHarness } from '../api/support.js';
import { write, type Person } from '../helpers/people.js';
import { beforePurges } from '../helpers/purge-hook.js';

let h: ApiHarness;
beforeAll(async () => {
  h = await startApiHarness();
}, 120_000);
afterAll(async () => h?.stop());

const OLGA: Person = { id: 'olga-5120', name: 'Ольга Берестова', phone: '+7 921 300-40-50', word: 'Черёмуха' };

/** The thread index as it stands: key → value (a ticket id, or JSON for floors). */
async function threadIndex(): Promise<Map<string, string>> {
  const prefix = `$KV.${Buckets.threads}.`;
  const out = new Map<string, string>();
  await scanStream(h.gw.gateway.bus, `KV_${Buckets.threads}`, { filter: `${prefix}>`, lastPerSubject: true }, (m) => {
    if (m.data.length) out.set(m.subject.slice(prefix.length), m.string());
  });
  return out;
}
const keysNaming = (index: Map<string, string>, ticketId: string) => [...index].filter(([, v]) => v === ticketId).map(([k]) => k);

describe('erasure against rebind', () => {
  it('keeps a binding that rebind moved to a new ticket between the scan and the purge', async () => {
    const erased = await write(h, OLGA, `${OLGA.id}-1`, `${OLGA.word}: заказ не пришёл`);
    // The conversation's binding: a chat conversation's key (conv.<hash>), among the message-id keys.
    const [binding, ...others] = keysNaming(await threadIndex(), erased).filter((k) => k.startsWith('conv.'));
    expect(binding).toBeDefined();
    expect(others).toEqual([]);
    let reopened: string | undefined;
    // The eraser's first purge of the thread index: the record is purged by now and the binding
    // scanned. The customer writes again here, through the gateway's own (unwrapped) bus.
    const bus = beforePurges(h.gw.gateway.bus, async (stream) => {
      if (stream === `KV_${Buckets.threads}` && reopened === undefined) reopened = await write(h, OLGA, `${OLGA.id}-2`, 'Есть новости?');
    });
    const eraser = new Eraser(bus, createLogger({ level: 'silent' }));
    const result = await eraser.erase({ ticketIds: [erased], identities: [] }, { reason: 'retention', requestedBy: 'test' });
    expect(reopened).toBeDefined();
    expect(reopened).not.toBe(erased); // a new number: the erased one is never given again
    expect(result.erased.threadKeys).toBeGreaterThan(0); // the erased ticket's binding revision went
    const index = await threadIndex();
    expect(keysNaming(index, erased)).toEqual([]);
    expect(index.get(binding!)).toBe(reopened);
    // The conversation stays with its new ticket, also for a replica that never cached the binding.
    h.gw.gateway.router!.store.invalidate(binding!);
    expect(await write(h, OLGA, `${OLGA.id}-3`, 'Жду ответа')).toBe(reopened);
  }, 120_000);
});
