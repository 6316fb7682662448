/**
 * kill -9 of the nats-server leading OMNI_IN while messages stream in through the HTTP channel
 * of three gateway replicas; the node comes back on its ports and store after ~10 s. What a
 * node loss must cost is delay (leader elections, publishes retried), never a message: the
 * counts in Fleet.verify() must all hold.
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

describe('node loss under load', () => {
  it('kill -9 of the OMNI_IN leader, back after 10 s: every message once, one ticket per conversation, replies once, webhooks in order', async () => {
    let victim = -1;
    const ids = await fleet.load({
      total: 300,
      conversations: 30,
      perSecond: 20,
      during: async () => {
        await new Promise((r) => setTimeout(r, 3000));
        victim = await fleet.cluster.streamLeader('OMNI_IN');
        await fleet.cluster.kill(victim, 'SIGKILL');
        await new Promise((r) => setTimeout(r, 10_000));
        await fleet.cluster.restart(victim);
      },
    });
    const report = await fleet.verify(ids);
    console.log(`node kill (n${victim + 1}, OMNI_IN leader): ${JSON.stringify(report)}`);
    if (process.env.FLEET_DEBUG) console.log(fleet.gateways.map((g) => g?.process.output().split('\n').filter((l) => new RegExp(process.env.FLEET_DEBUG!).test(l)).join('\n')).join('\n-----\n'));
    expect(report.problems).toEqual([]);
    expect(report.logged).toBe(300);
    expect(report.tickets).toBe(30);
    expect(report.replies).toBe(30);
  }, 240_000);
});
