/**
 * A ticket's reply slot (router/reply-slot.ts) left by a replica is taken over once this process
 * has seen it unchanged for the stale time, whatever the holder's clock said when it took it: a
 * holder whose clock ran ahead wrote slots that never looked stale (every later reply of the
 * ticket answered `in_progress` for good), one whose clock ran behind, slots taken over while it
 * still held them (its reply and the next could go out in either order).
 */
import { describe, expect, it } from 'vitest';
import type { TestGateway } from '../helpers/gateway.js';
import { gatewayPerFile } from '../helpers/file-gateway.js';
import { createLogger } from '../../src/core/logger.js';
import { ReplySlots, slotKey } from '../../src/router/reply-slot.js';
import { HolderWatch, SERVER_AGE_MS } from '../../src/core/holder-watch.js';

let gw: TestGateway;
gatewayPerFile({ connectors: [] }, (g) => (gw = g));

const log = createLogger({ level: (process.env.TEST_LOG as 'debug') ?? 'silent' });
const HOUR = 3_600_000;

/** A slot another replica took at `at` by its own clock and still holds. */
async function heldElsewhere(ticketId: string, at: number): Promise<number> {
  return gw.gateway.bus.kv.dedup.create(slotKey(ticketId), JSON.stringify({ at }));
}

describe("a ticket's reply slot held by another replica", () => {
  it('is taken over after being seen unchanged for the stale time, though its holder\'s clock ran an hour ahead', async () => {
    const revision = await heldElsewhere('T-slot-ahead', Date.now() + HOUR);
    const slots = new ReplySlots(gw.gateway.bus, log, 300);
    const started = performance.now();
    const slot = await slots.acquire('T-slot-ahead');
    expect(slot).not.toBeNull();
    expect(performance.now() - started).toBeGreaterThanOrEqual(300);
    const now = await gw.gateway.bus.kv.dedup.get(slotKey('T-slot-ahead'));
    expect(now?.revision).toBeGreaterThan(revision);
    await slot!.release();
  });

  it("is not taken over before the stale time, though its holder's clock ran an hour behind", async () => {
    const revision = await heldElsewhere('T-slot-behind', Date.now() - HOUR);
    const slots = new ReplySlots(gw.gateway.bus, log, 60_000);
    const signal = AbortSignal.timeout(500);
    expect(await slots.acquire('T-slot-behind', signal)).toBeNull();
    const now = await gw.gateway.bus.kv.dedup.get(slotKey('T-slot-behind'));
    expect(now?.revision).toBe(revision);
  });

  it('a new revision of the slot (its holder released it and another took it) starts the watch again', async () => {
    const kv = gw.gateway.bus.kv.dedup;
    const first = await heldElsewhere('T-slot-handed', Date.now());
    const slots = new ReplySlots(gw.gateway.bus, log, 1_000);
    const waiting = slots.acquire('T-slot-handed');
    await new Promise((r) => setTimeout(r, 700));
    // Handed on: the watch of the first revision must not count for the second.
    const second = await kv.update(slotKey('T-slot-handed'), JSON.stringify({ at: Date.now() }), first);
    const handedAt = performance.now();
    const slot = await waiting;
    expect(slot).not.toBeNull();
    expect(performance.now() - handedAt).toBeGreaterThanOrEqual(900);
    expect((await kv.get(slotKey('T-slot-handed')))?.revision).toBeGreaterThan(second);
    await slot!.release();
  });
});

describe('the stored-long-ago shortcut', () => {
  it('does not take a live slot for a replica whose clock runs a minute ahead of the server (it was 4 × the stale time: 60 s)', () => {
    const { watched } = new ReplySlots(gw.gateway.bus, log) as unknown as { watched: HolderWatch };
    expect(watched.serverAgeMs).toBe(SERVER_AGE_MS);
    // What a waiter whose clock runs 61 s ahead sees of a slot the server stored just now.
    expect(watched.stale('T-slot-skew', 1, new Date(Date.now() - 61_000))).toBe(false);
  });
});
