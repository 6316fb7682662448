/**
 * A network partition of one nats-server for 20 s, under load through three gateway replicas:
 * the node is restarted with no routes on a route port nobody dials (its clients reconnect to it
 * and find a JetStream without quorum: timeouts, not errors they could tell apart), then
 * restarted with its routes and catches up. Nothing may be lost or doubled; Fleet.verify() counts.
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

describe('partition', () => {
  it('the OMNI_IN leader cut off for 20 s, then back: every message once, one ticket per conversation, replies once, webhooks in order', async () => {
    let victim = -1;
    const ids = await fleet.load({
      total: 400,
      conversations: 40,
      perSecond: 15,
      during: async () => {
        await new Promise((r) => setTimeout(r, 3000));
        victim = await fleet.cluster.streamLeader('OMNI_IN');
        await fleet.cluster.partition(victim);
        await new Promise((r) => setTimeout(r, 20_000));
        await fleet.cluster.heal(victim);
      },
    });
    const report = await fleet.verify(ids, 180_000);
    console.log(`partition (n${victim + 1}, OMNI_IN leader, 20 s): ${JSON.stringify(report)}`);
    expect(report.problems).toEqual([]);
    expect(report.logged).toBe(400);
    expect(report.tickets).toBe(40);
    expect(report.replies).toBe(40);
  }, 300_000);
});
