/**
 * An idempotency key's claim (router/command-idempotency.ts) written by another replica is taken
 * over only once this process has seen it unchanged for the stale time, whatever that replica's
 * clock said when it wrote it. A replica whose clock ran 2 minutes behind wrote claims the others
 * took for stale at once: a retry of the same reply on a second replica ran it again while the
 * first was still running it, and the reply went out twice.
 */
import { describe, expect, it } from 'vitest';
import type { TestGateway } from '../helpers/gateway.js';
import { gatewayPerFile } from '../helpers/file-gateway.js';
import { createLogger } from '../../src/core/logger.js';
import { hashKey } from '../../src/core/subjects.js';
import { commandClaims, runOnce } from '../../src/router/command-idempotency.js';
import type { CommandResult } from '../../src/router/commands.js';

let gw: TestGateway;
gatewayPerFile({ connectors: [] }, (g) => (gw = g));

const log = createLogger({ level: (process.env.TEST_LOG as 'debug') ?? 'silent' });
const SKEW = 2 * 60_000;

/** A claim of a command still running on another replica whose clock is `skewMs` behind ours. */
async function claimedElsewhere(key: string, skewMs: number): Promise<number> {
  return gw.gateway.bus.kv.dedup.create(`cmd.reply.${hashKey(key)}`, JSON.stringify({ pending: true, at: Date.now() - skewMs }));
}

describe('an idempotency claim of a replica whose clock runs behind', () => {
  it('is not taken over while this process has seen it for less than the stale time', async () => {
    const revision = await claimedElsewhere('skew-fresh', SKEW);
    const acts: (number | undefined)[] = [];
    const act = async (earlier?: number): Promise<CommandResult> => (acts.push(earlier), { ok: true, result: {} });
    // Stopped after 500 ms (the wait would be 5 s): long enough for several looks at the claim.
    const r = await runOnce(gw.gateway.bus, log, commandClaims(), 'reply', 'skew-fresh', act, AbortSignal.timeout(500));
    expect(r).toMatchObject({ ok: false, error: { code: 'in_progress' } });
    expect(acts).toEqual([]);
    const now = await gw.gateway.bus.kv.dedup.get(`cmd.reply.${hashKey('skew-fresh')}`);
    expect(now?.revision).toBe(revision);
  });

  it('is taken over, once, when seen unchanged for the stale time (its replica died)', async () => {
    await claimedElsewhere('skew-dead', SKEW);
    const claims = commandClaims(400);
    const acts: (number | undefined)[] = [];
    const act = async (earlier?: number): Promise<CommandResult> => (acts.push(earlier), { ok: true, result: { n: acts.length } });
    const started = performance.now();
    const r = await runOnce(gw.gateway.bus, log, claims, 'reply', 'skew-dead', act);
    expect(r).toMatchObject({ ok: true, result: { n: 1 } });
    expect(performance.now() - started).toBeGreaterThanOrEqual(400);
    // Told when the dead attempt began (by its clock), to look for what it may have written.
    expect(acts).toHaveLength(1);
    expect(acts[0]).toBeLessThan(Date.now() - SKEW + 1_000);
    const replay = await runOnce(gw.gateway.bus, log, claims, 'reply', 'skew-dead', act);
    expect(replay).toMatchObject({ ok: true, replayed: true, result: { n: 1 } });
    expect(acts).toHaveLength(1);
  });

  it('a claim rewritten meanwhile (another attempt took it) is watched again from the start', async () => {
    const kv = gw.gateway.bus.kv.dedup;
    const key = `cmd.reply.${hashKey('skew-moved')}`;
    const first = await claimedElsewhere('skew-moved', SKEW);
    const claims = commandClaims(1_000);
    const act = async (): Promise<CommandResult> => ({ ok: true, result: {} });
    expect(await runOnce(gw.gateway.bus, log, claims, 'reply', 'skew-moved', act, AbortSignal.timeout(700))).toMatchObject({ ok: false });
    const second = await kv.update(key, JSON.stringify({ pending: true, at: Date.now() - SKEW }), first);
    // 700 ms more: 1.4 s since the first revision was seen, 700 ms since this one.
    expect(await runOnce(gw.gateway.bus, log, claims, 'reply', 'skew-moved', act, AbortSignal.timeout(700))).toMatchObject({ ok: false });
    expect((await kv.get(key))?.revision).toBe(second);
  });
});
