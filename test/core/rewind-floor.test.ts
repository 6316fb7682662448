/**
 * A durable recreated at a start sequence that has acked nothing yet reports an ack floor of 0 on
 * nats-server 2.9.10: a rewind to it replayed the whole retained stream. The floor is bounded by
 * the durable's start (core/rewind.ts floorOf).
 */
import { afterAll, beforeAll, expect, it } from 'vitest';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { AckPolicy, DeliverPolicy, jetstream, jetstreamManager, type JetStreamManager } from '@nats-io/jetstream';
import { ackFloor, floorOf, rewindOrphans } from '../../src/core/rewind.js';
import { startNats, type TestNats } from '../helpers/nats-server.js';

let nats: TestNats;
let nc: NatsConnection;
let jsm: JetStreamManager;

beforeAll(async () => {
  nats = await startNats();
  nc = await connect({ servers: nats.url });
  jsm = await jetstreamManager(nc);
  await jsm.streams.add({ name: 'FLOOR', subjects: ['floor.>'] });
  const js = jetstream(nc);
  for (let i = 1; i <= 10; i++) await js.publish('floor.a', `m${i}`);
});
afterAll(async () => {
  await nc?.close();
  await nats?.stop();
});

it('a durable started at sequence 6 that acked nothing has its floor at 5, and a rewind restarts it at 6, not at 1', async () => {
  await jsm.consumers.add('FLOOR', { durable_name: 'd', ack_policy: AckPolicy.Explicit, deliver_policy: DeliverPolicy.StartSequence, opt_start_seq: 6, ack_wait: 60_000_000_000 });
  const c = await jetstream(nc).consumers.get('FLOOR', 'd');
  const batch = await c.fetch({ max_messages: 2, expires: 2000 });
  const seqs: number[] = [];
  for await (const m of batch) seqs.push(m.seq); // taken, never acked: "ack pending", like a holder that died
  expect(seqs).toEqual([6, 7]);
  const info = await jsm.consumers.info('FLOOR', 'd');
  expect(floorOf(info)).toBe(5);
  expect(await ackFloor(jsm, 'FLOOR', 'd')).toBe(5);
  expect(await rewindOrphans(jsm, 'FLOOR', 'd')).toBe(6);
  const again = await jetstream(nc).consumers.get('FLOOR', 'd');
  const first = await again.next({ expires: 2000 });
  expect(first?.seq).toBe(6);
  first?.ack();
});

it('a durable reading the whole stream keeps the floor the server reports', async () => {
  await jsm.consumers.add('FLOOR', { durable_name: 'all', ack_policy: AckPolicy.Explicit, deliver_policy: DeliverPolicy.All });
  expect(floorOf(await jsm.consumers.info('FLOOR', 'all'))).toBe(0);
  const c = await jetstream(nc).consumers.get('FLOOR', 'all');
  const m = await c.next({ expires: 2000 });
  await m!.ackAck();
  expect(floorOf(await jsm.consumers.info('FLOOR', 'all'))).toBe(1);
});
