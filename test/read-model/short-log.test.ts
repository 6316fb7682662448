/**
 * A ticket log that NATS says ends before the read model's checkpoint, with the creation time the
 * checkpoint recorded. An outside cluster trial: a restarted node that was behind answered stream
 * info with last_seq 68 while the log was at 1083, and every replica in turn called the NATS store
 * replaced (LogReplacedError, /readyz readModel.error: "rebuild it") and applied nothing for 70 s,
 * though nothing was replaced. Such an answer is now asked again for a while; a log that stays
 * short is still refused (applying from it would skip its new entries up to the checkpoint), and
 * another creation time is refused at once.
 *
 * The row check (lost-rows.ts) records how far a replay restoring lost rows must go from the same
 * answer: a short one ended the replay (closing line, `rebuilding` cleared) long before it had
 * restored what it was for. It asks again the same way.
 *
 * `bus.jsm.streams.info` is wrapped to answer as a node behind would: a short last_seq.
 */
import { beforeAll, describe, expect, it } from 'vitest';
import type { Bus } from '../../src/core/bus.js';
import { Streams, Subjects } from '../../src/core/subjects.js';
import type { Projection } from '../../src/read-model/projection.js';
import { inboundEntry, projectionRig } from './projection-rig.js';

const SHORT = 2;

/**
 * `bus`'s stream info for OMNI_LOG answering as the returned `node` says: `trueFirst` answers as
 * they are, then `shortAnswers` (or, while `alwaysShort`, every one) ending at SHORT; `created`
 * in place of the log's creation time.
 */
function nodeBehind(bus: Bus) {
  const node = { trueFirst: 0, shortAnswers: 0, alwaysShort: false, created: undefined as string | undefined };
  const streams = bus.jsm.streams;
  const info = streams.info.bind(streams);
  streams.info = async (...args: Parameters<typeof info>) => {
    const answer = await info(...args);
    if (args[0] !== Streams.log) return answer;
    const created = node.created ?? answer.created;
    if (node.trueFirst > 0) {
      node.trueFirst--;
      return { ...answer, created };
    }
    if (!node.alwaysShort && node.shortAnswers <= 0) return { ...answer, created };
    node.shortAnswers--;
    return { ...answer, created, state: { ...answer.state, last_seq: SHORT } };
  };
  return node;
}

describe('a ticket log NATS says is shorter than the checkpoint', () => {
  const rig = projectionRig({ engine: 'pglite' });
  const { lines, said } = rig;
  let projection: Projection | undefined;
  const run = async (o: { shortLogRecheckMs?: number; shortLogWaitMs?: number } = {}) => (projection = await rig.run(o));
  let node: ReturnType<typeof nodeBehind>;
  beforeAll(() => {
    node = nodeBehind(rig.bus);
  });

  async function publish(n: number): Promise<void> {
    for (let i = 0; i < n; i++) await rig.bus.js.publish(Subjects.ticketLog('T-short'), `{"n":${i}}`); // not understood: skipped, the checkpoint moves
  }

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

describe('rows lost behind the projection while a NATS node behind answers', () => {
  const rig = projectionRig({ engine: 'pglite' });
  let node: ReturnType<typeof nodeBehind>;
  beforeAll(() => {
    node = nodeBehind(rig.bus);
  });

  it('the replay restoring them goes to the log\'s end, not to the short end the row check was told', async () => {
    for (const id of ['T-1', 'T-2', 'T-3']) for (let n = 0; n < 2; n++) await rig.bus.js.publish(Subjects.ticketLog(id), JSON.stringify(inboundEntry(id, n)));
    const end = await rig.logEnd();
    expect(end).toBeGreaterThan(SHORT + 2);
    const first = await rig.run();
    await expect.poll(() => first.checkpoint(), { timeout: 15_000 }).toBe(end);
    await first.stop();
    await rig.db.query('TRUNCATE tickets CASCADE');

    // The applier's look at the log at its start (same-log.ts) is told the truth; the row check
    // right after it, a short end three times. One entry a batch: a replay told it was done at
    // SHORT would say so there.
    node.trueFirst = 1;
    node.shortAnswers = 3;
    rig.lines.length = 0;
    const p = await rig.run({ batchSize: 1, shortLogRecheckMs: 200 });
    await expect.poll(() => rig.said('read model replayed the log: lost rows restored').length, { timeout: 30_000 }).toBe(1);
    expect(rig.said('Replaying the log to restore lost rows')).toHaveLength(1);
    const closing = JSON.parse(rig.said('read model replayed the log: lost rows restored')[0]!) as { checkpoint: number; tickets: number };
    expect(closing).toMatchObject({ checkpoint: end, tickets: 3 });
    expect(node.shortAnswers).toBeLessThanOrEqual(0);
    expect(rig.said('a NATS node that was behind answered')).toHaveLength(1);
    expect(p.status().rebuilding).toBeUndefined();
    expect(await p.checkpoint()).toBe(end);
  });
});
