/**
 * A ticket log that NATS says ends before the read model's checkpoint, with the creation time the
 * checkpoint recorded. An outside cluster trial: a restarted node that was behind answered stream
 * info with last_seq 68 while the log was at 1083, and every replica in turn called the NATS store
 * replaced (LogReplacedError, /readyz readModel.error: "rebuild it") and applied nothing for 70 s,
 * though nothing was replaced. Such an answer is now asked again for a while; a log that stays
 * short is still refused (applying from it would skip its new entries up to the checkpoint), and
 * another creation time is refused at once.
 *
 * `bus.jsm.streams.info` is wrapped to answer as a node behind would: a short last_seq.
 */
import { Writable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Bus } from '../../src/core/bus.js';
import { createLogger } from '../../src/core/logger.js';
import { Streams, Subjects } from '../../src/core/subjects.js';
import type { Database } from '../../src/read-model/database.js';
import { migrate } from '../../src/read-model/migrations.js';
import { Projection } from '../../src/read-model/projection.js';
import { startNats, type TestNats } from '../helpers/nats-server.js';
import { openTestDatabase } from '../helpers/sql.js';

const lines: string[] = [];
const log = createLogger({
  level: 'info',
  destination: new Writable({
    write(chunk: Buffer, _enc, done) {
      lines.push(...chunk.toString().split('\n').filter(Boolean));
      done();
    },
  }),
});
const said = (text: string) => lines.filter((l) => l.includes(text));

let nats: TestNats;
let bus: Bus;
let db: Database;
let cleanup: () => Promise<void>;
let projection: Projection | undefined;
/** What the wrapped stream info answers for OMNI_LOG. */
const node = { shortAnswers: 0, alwaysShort: false, created: undefined as string | undefined };
const SHORT = 2;

beforeAll(async () => {
  nats = await startNats();
  bus = await Bus.connect({ url: nats.url, replicas: 1, duplicateWindowMs: 120_000, retentionMs: 86_400_000, dedupTtlMs: 86_400_000, leaseTtlMs: 5_000 }, log);
  await bus.provision();
  ({ db, cleanup } = await openTestDatabase('pglite'));
  await migrate(db);
  const streams = bus.jsm.streams;
  const info = streams.info.bind(streams);
  streams.info = async (...args: Parameters<typeof info>) => {
    const answer = await info(...args);
    if (args[0] !== Streams.log) return answer;
    const created = node.created ?? answer.created;
    if (!node.alwaysShort && node.shortAnswers <= 0) return { ...answer, created };
    node.shortAnswers--;
    return { ...answer, created, state: { ...answer.state, last_seq: SHORT } };
  };
}, 120_000);
afterAll(async () => {
  await projection?.stop();
  await bus?.close();
  await db?.close();
  await cleanup?.();
  await nats?.stop();
});

async function publish(n: number): Promise<void> {
  for (let i = 0; i < n; i++) await bus.js.publish(Subjects.ticketLog('T-short'), `{"n":${i}}`); // not understood: skipped, the checkpoint moves
}

async function run(o: { shortLogRecheckMs?: number; shortLogWaitMs?: number } = {}): Promise<Projection> {
  await projection?.stop();
  projection = new Projection(bus, async () => db, log, o);
  projection.start();
  return projection;
}

describe('a ticket log NATS says is shorter than the checkpoint', () => {
  it('at the start: asked again, applying goes on once the node has caught up, with one warning and no "replaced"', async () => {
    await publish(5);
    const first = await run();
    await expect.poll(() => first.checkpoint(), { timeout: 10_000 }).toBe(5);
    await first.stop();

    lines.length = 0;
    node.shortAnswers = 3; // a node behind answers three times, then the truth
    const p = await run({ shortLogRecheckMs: 300 });
    await publish(2);
    await expect.poll(() => p.checkpoint(), { timeout: 15_000 }).toBe(7);
    expect(node.shortAnswers).toBeLessThanOrEqual(0);
    expect(p.status().error).toBeUndefined();
    expect(said('replaced')).toEqual([]);
    expect(said('a NATS node that was behind answered')).toHaveLength(1);
  });

  it('while idle: the same (the running cluster of the trial)', async () => {
    const p = projection!;
    lines.length = 0;
    node.shortAnswers = 3;
    await expect.poll(() => node.shortAnswers, { timeout: 10_000 }).toBeLessThanOrEqual(0);
    await publish(1);
    await expect.poll(() => p.checkpoint(), { timeout: 15_000 }).toBe(8);
    expect(p.status().error).toBeUndefined();
    expect(said('replaced')).toEqual([]);
    expect(said('a NATS node that was behind answered')).toHaveLength(1);
  });

  it('a log that stays short is refused after the wait, naming a restore and lost entries, and nothing is applied', async () => {
    lines.length = 0;
    node.alwaysShort = true;
    const started = Date.now();
    const p = await run({ shortLogRecheckMs: 300, shortLogWaitMs: 1_500 });
    await publish(2);
    await expect.poll(() => p.status().error, { timeout: 10_000 }).toMatch(/restored from a backup, or NATS lost its newest entries.*rebuild the read model/);
    expect(Date.now() - started).toBeGreaterThanOrEqual(1_500);
    const refused = said('still did after');
    expect(refused.length).toBeGreaterThanOrEqual(1);
    expect(refused[0]).toMatch(/applied the ticket log up to sequence 8, but .* ends at 2 .*restored from a backup.*NATS lost its newest entries.*rebuilt from the log/);
    expect(await p.checkpoint()).toBe(8);
  });

  it('a stop while asking again ends at once', async () => {
    const p = await run({ shortLogRecheckMs: 300, shortLogWaitMs: 60_000 });
    lines.length = 0;
    await expect.poll(() => said('asking again').length, { timeout: 10_000 }).toBeGreaterThan(0);
    const t = Date.now();
    await p.stop();
    expect(Date.now() - t).toBeLessThan(2_000);
    node.alwaysShort = false;
  });

  it('another creation time is refused at once, without waiting', async () => {
    node.created = '2026-01-01T00:00:00Z';
    const started = Date.now();
    const p = await run(); // the default wait of 30 s would apply to a short log only
    await expect.poll(() => p.status().error, { timeout: 10_000 }).toMatch(/ticket log was replaced/);
    expect(Date.now() - started).toBeLessThan(10_000);
    expect(said('was created at 2026-01-01T00:00:00Z, not')).not.toEqual([]);
    expect(await p.checkpoint()).toBe(8);
    node.created = undefined;
  });
});
