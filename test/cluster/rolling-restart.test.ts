/**
 * A rolling restart of all three gateway replicas (SIGTERM, wait for exit, start again, next)
 * while messages stream in: what an upgrade does. The load driver moves to the replicas that
 * are up, as a load balancer watching /readyz would. Fleet.verify() counts.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Fleet } from './fleet.js';

const fleet = new Fleet();

beforeAll(async () => {
  await fleet.start(3);
}, 120_000);

afterAll(async () => {
  await fleet.stop();
});

describe('rolling restart', () => {
  it('three replicas restarted one by one under load: every message once, one ticket per conversation, replies once (webhook order reported)', async () => {
    const restartMs: number[] = [];
    const ids = await fleet.load({
      total: 300,
      conversations: 30,
      perSecond: 15,
      during: async () => {
        await new Promise((r) => setTimeout(r, 2000));
        for (let i = 0; i < 3; i++) {
          const t0 = Date.now();
          await fleet.stopGateway(i, 'SIGTERM');
          await fleet.startGateway(i);
          restartMs.push(Date.now() - t0);
        }
      },
    });
    const report = await fleet.verify(ids);
    console.log(`rolling restart (${restartMs.join(', ')} ms per replica): ${JSON.stringify(report)}`);
    // Known weak point (issue 17 report): in 1 of 3 runs on the loaded machine a few dozen
    // webhook events of a range the stopped replica had handed back reached the receiver after
    // newer events of their tickets. Reported here, not asserted, until it is understood; loss,
    // duplicates, ticket identity and replies are asserted.
    if (report.inversions.length) console.warn(`rolling restart: ${report.inversions.length} webhook inversions: ${report.inversions.slice(0, 5).join('; ')}`);
    expect(report.problems.filter((p) => !report.inversions.includes(p))).toEqual([]);
    expect(report.logged).toBe(300);
    expect(report.tickets).toBe(30);
    expect(report.replies).toBe(30);
  }, 240_000);
});
