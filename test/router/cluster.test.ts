/**
 * Three nats-servers (Debian's 2.9.10 unless OMNIGATE_TEST_NATS_SERVER names another) and three
 * gateways with `nats.replicas: 3`, as README "Scale" describes: 1,000 messages over 100
 * conversations, published round-robin through the three nodes. Every message lands once in its
 * own conversation's ticket, no number is used twice, and every ticket's counter equals its log.
 * On 2.9.10 this is the case the start-up self-check guards (nats-server#4320): before, 11 of
 * 300 conversations merged in the same setup.
 */
import { PATIENT } from '../helpers/nats-server.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { jetstream, jetstreamManager } from '@nats-io/jetstream';
import { Kvm } from '@nats-io/kv';
import { startCluster, type TestCluster } from '../helpers/nats-cluster.js';
import { spawnGateway, writeConfig, type GatewayProcess } from '../helpers/process.js';
import { chatMessage, inboundSubjectOf, readInboundLog, routerBacklog } from '../helpers/events.js';
import type { Ticket } from '../../src/core/schema.js';

const CONVERSATIONS = 100;
const PER_CONVERSATION = 10;

let cluster: TestCluster;
let conns: NatsConnection[] = [];
const gateways: GatewayProcess[] = [];

beforeAll(async () => {
  cluster = await startCluster(3);
  conns = await Promise.all(cluster.nodes.map((n) => connect({ servers: n.url })));
}, 90_000);

afterAll(async () => {
  await Promise.all(gateways.splice(0).map((g) => g.kill('SIGKILL')));
  await Promise.all(conns.map((c) => c.close()));
  await cluster?.stop();
});

function gatewayOn(url: string): GatewayProcess {
  const file = writeConfig({
    nats: { url, replicas: 3, leaseTtl: '3s' },
    http: { host: '127.0.0.1', port: 0 },
    log: { level: 'info' },
    router: { ackWait: '5s', concurrency: 64 },
  });
  const g = spawnGateway(file);
  gateways.push(g);
  return g;
}

describe('three gateways on a three-node cluster, replicas 3', () => {
  it('1,000 messages over 100 conversations: one ticket each, no number twice, counters equal to the logs', async () => {
    // One gateway provisions first: three replicas creating the same R3 streams at once only
    // cost the test time. The other two start against what it made.
    const first = gatewayOn(cluster.nodes[0]!.url);
    await first.started;
    const rest = cluster.nodes.slice(1).map((n) => gatewayOn(n.url));
    await Promise.all(rest.map((g) => g.started));
    const unsafe = /compare-and-set is not atomic/.test(first.output());
    console.log(`cluster ${conns[0]!.info?.version}: self-check ${unsafe ? 'found compare-and-set unsafe: guarded mode' : 'passed'}`);

    const clients = conns.map((c) => jetstream(c, { timeout: 20_000 }));
    const ids: string[] = [];
    const acks: Promise<unknown>[] = [];
    let n = 0;
    for (let i = 0; i < PER_CONVERSATION; i++) {
      for (let c = 0; c < CONVERSATIONS; c++) {
        const e = chatMessage({ channel: 'webhook', account: 'cluster', chat: `conv-${c}`, text: `сообщение ${i} в беседе ${c}` });
        ids.push(e.id);
        acks.push(clients[n++ % clients.length]!.publish(inboundSubjectOf(e), JSON.stringify(e), { msgID: e.id }));
        if (acks.length >= 200) await Promise.all(acks.splice(0));
      }
    }
    await Promise.all(acks);

    const jsm = await jetstreamManager(conns[0]!, PATIENT);
    const deadline = Date.now() + 45_000;
    for (;;) {
      const backlog = await routerBacklog(jsm);
      if (backlog === 0) break;
      if (Date.now() > deadline) throw new Error(`routing not finished: ${backlog} pending or unacked`);
      await new Promise((r) => setTimeout(r, 500));
    }

    // The logs: every inbound entry with its ticket.
    const entries = await readInboundLog(conns[0]!);
    const perEvent = new Map<string, number>();
    for (const e of entries) perEvent.set(e.eventId, (perEvent.get(e.eventId) ?? 0) + 1);
    expect(ids.filter((id) => !perEvent.has(id))).toEqual([]);
    expect([...perEvent].filter(([, count]) => count > 1)).toEqual([]);

    // Each conversation in one ticket, each ticket one conversation's.
    const ticketsOf = new Map<string, Set<string>>();
    const conversationsOf = new Map<string, Set<string>>();
    for (const e of entries) {
      (ticketsOf.get(e.conversation) ?? ticketsOf.set(e.conversation, new Set()).get(e.conversation)!).add(e.ticketId);
      (conversationsOf.get(e.ticketId) ?? conversationsOf.set(e.ticketId, new Set()).get(e.ticketId)!).add(e.conversation);
    }
    expect([...ticketsOf].filter(([, t]) => t.size !== 1)).toEqual([]);
    expect([...conversationsOf].filter(([, c]) => c.size !== 1)).toEqual([]);
    expect(conversationsOf.size).toBe(CONVERSATIONS);

    // Counters equal to the logs; numbers unique.
    const kv = await new Kvm(clients[0]!).open('omni_tickets');
    const numbers = new Set<number>();
    const mismatched: string[] = [];
    for (const ticketId of conversationsOf.keys()) {
      const t = (await kv.get(ticketId))!.json<Ticket>();
      numbers.add(t.number);
      const logged = entries.filter((e) => e.ticketId === ticketId).length;
      if (t.messageCount !== logged) mismatched.push(`${ticketId}: counter ${t.messageCount}, log ${logged}`);
    }
    expect(mismatched).toEqual([]);
    expect(numbers.size).toBe(CONVERSATIONS);
    for (const g of gateways) expect(g.output()).not.toMatch(/"level":(50|60)|"level":"(error|fatal)"/);
  }, 120_000);
});
