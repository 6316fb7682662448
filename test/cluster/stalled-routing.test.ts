/**
 * Routing that cannot make progress while NATS is connected turns /readyz unready (outside trial:
 * after a node's disk filled, KV_omni_cas_guards had no quorum, routing stood still for minutes
 * and replies answered 503, while every gateway's /readyz stayed 200).
 *
 * The cheapest faithful setup: a three-node cluster, a gateway on node 1 with `replicas: 3`, and
 * one bucket the routing writes to (omni_tickets) scaled down to one replica on another node,
 * which is then killed. The meta leader keeps its quorum (two of three), so JetStream answers and
 * lists every stream; every other stream keeps a quorum too; only that bucket has no leader.
 * Inbound messages then wait in the router's lanes, retried in place. Replies sent meanwhile all
 * fail: one `command failed` line at error level, not one per reply.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { jetstream, jetstreamManager, type JetStreamManager } from '@nats-io/jetstream';
import { PATIENT } from '../helpers/nats-server.js';
import { startCluster, whileElecting, type TestCluster } from '../helpers/nats-cluster.js';
import { monitorApi, monitorHeaders, spawnGateway, writeConfig, type GatewayProcess } from '../helpers/process.js';
import { freePort } from '../helpers/ports.js';
import { chatMessage, inboundSubjectOf, routerBacklog } from '../helpers/events.js';

const BUCKET = 'KV_omni_tickets';

let cluster: TestCluster;
let nc: NatsConnection;
let gateway: GatewayProcess | undefined;

beforeAll(async () => {
  cluster = await startCluster(3);
  nc = await connect({ servers: cluster.nodes[0]!.url });
}, 90_000);

afterAll(async () => {
  await gateway?.kill('SIGKILL');
  await nc?.close();
  await cluster?.stop();
});

interface Ready {
  status: number;
  reasons: string[];
  stalled?: Array<{ loop: string }>;
}

async function readyz(port: number, token = false): Promise<Ready> {
  const res = await fetch(`http://127.0.0.1:${port}/readyz`, token ? { headers: monitorHeaders } : {});
  // With a token the checks are the body; without, only the public reasons.
  const body = (await res.json()) as { reasons?: string[]; stalled?: Array<{ loop: string }> };
  return { status: res.status, reasons: body.reasons ?? [], stalled: body.stalled };
}

async function until<T>(what: string, timeoutMs: number, probe: () => Promise<T | undefined>): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await probe().catch(() => undefined);
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`not within ${timeoutMs} ms: ${what}`);
    await new Promise((r) => setTimeout(r, 250));
  }
}

async function publish(chat: string, text: string): Promise<void> {
  const e = chatMessage({ channel: 'webhook', account: 'stall', chat, text });
  await jetstream(nc, PATIENT).publish(inboundSubjectOf(e, 4), JSON.stringify(e), { msgID: e.id });
}

/** Moves the bucket's leadership off node 0 and scales it to that one replica: the bucket then lives on a node we can kill. */
async function bucketOnAnotherNode(jsm: JetStreamManager): Promise<number> {
  for (let i = 0; i < 20 && (await cluster.streamLeader(BUCKET)) === 0; i++) {
    await nc.request(`$JS.API.STREAM.LEADER.STEPDOWN.${BUCKET}`, '', { timeout: 5_000 }).catch(() => undefined);
    await new Promise((r) => setTimeout(r, 1_000));
  }
  const leader = await cluster.streamLeader(BUCKET);
  expect(leader).not.toBe(0);
  const info = await jsm.streams.info(BUCKET);
  await jsm.streams.update(BUCKET, { ...info.config, num_replicas: 1 });
  return until('the bucket on one replica', 20_000, async () => {
    const c = (await jsm.streams.info(BUCKET)).cluster;
    if ((c?.replicas ?? []).length > 0) return undefined;
    const at = cluster.nodes.findIndex((n) => n.name === c?.leader);
    return at > 0 ? at : undefined;
  });
}

describe('stalled routing', () => {
  it('makes /readyz unready while routing has work and cannot move, ready again once it moves; one error line for the failing replies', async () => {
    const port = await freePort();
    const file = writeConfig({
      nats: { url: cluster.nodes[0]!.url, replicas: 3, leaseTtl: '3s' },
      http: { host: '127.0.0.1', port },
      api: monitorApi,
      log: { level: 'info' },
      router: { ackWait: '5s', partitions: 4, stallAfter: '5s' },
    });
    gateway = spawnGateway(file);
    await gateway.started;
    const jsm = await jetstreamManager(nc, PATIENT);

    // A ticket to reply to, routed while all is well.
    await publish('before', 'до сбоя');
    await until('the first message routed', 30_000, async () => ((await routerBacklog(jsm, 4)) === 0 ? true : undefined));
    const ticketId = 'T-1001'; // the first ticket (router.firstTicketNumber)
    expect((await readyz(port)).status).toBe(200);

    const node = await bucketOnAnotherNode(jsm);
    await cluster.kill(node, 'SIGKILL');

    // Work waiting: messages of new and old conversations.
    for (let i = 0; i < 6; i++) await whileElecting(() => publish(`during-${i}`, `во время сбоя ${i}`));
    // Replies, all failing on the bucket (to tickets of their own: replies to one ticket queue one at a time).
    const replies = Array.from({ length: 12 }, (_, i) => nc.request('omni.cmd.reply', JSON.stringify({ ticketId: i === 0 ? ticketId : `T-${2000 + i}`, text: `ответ ${i}` }), { timeout: 20_000 }).then((m) => m.json<{ ok: boolean; error?: { code: string } }>(), (err: unknown) => ({ ok: false, error: { code: String(err) } })));

    const unready = await until('/readyz 503 for stalled routing', 40_000, async () => {
      const r = await readyz(port);
      return r.status === 503 && r.reasons.some((x) => x.startsWith('loop router.')) ? r : undefined;
    }).catch(async (err: unknown) => {
      const res = await fetch(`http://127.0.0.1:${port}/readyz`, { headers: monitorHeaders });
      console.log('readyz with a token:', JSON.stringify(await res.json()).slice(0, 6000));
      console.log('backlog and the gateway log:', await routerBacklog(jsm, 4), gateway!.output().split('\n').filter((l) => /warn|error|"level":(40|50)/.test(l)).slice(-30).join('\n'));
      throw err;
    });
    expect(unready.reasons).toEqual(expect.arrayContaining([expect.stringMatching(/^loop router\.(partition\.\d+|unpartitioned) stalled/)]));
    // The public reasons name no address and carry no error text.
    expect(unready.reasons.join(' ')).not.toMatch(/127\.0\.0\.1|nats:\/\/|timeout|TimeoutError/i);
    const detailed = await readyz(port, true);
    expect(detailed.stalled?.some((s) => s.loop.startsWith('router.'))).toBe(true);
    const metrics = await (await fetch(`http://127.0.0.1:${port}/metrics`, { headers: monitorHeaders })).text();
    expect(metrics).toMatch(/omnigate_loop_stalled\{loop="router\.(partition\.\d+|unpartitioned)"\} 1/);

    const answers = await Promise.all(replies);
    const codes = answers.map((a) => (a.ok ? 'ok' : a.error?.code));
    expect(codes.filter((c) => c !== 'internal'), codes.join(', ')).toEqual([]);
    const failedAtError = () => gateway!.output().split('\n').filter((l) => l.includes('"command failed"') && l.includes('"level":"error"'));
    await until('the outage logged', 10_000, async () => (failedAtError().length > 0 ? true : undefined));
    await new Promise((r) => setTimeout(r, 1_000)); // the log written by then, had there been more
    expect(failedAtError(), gateway.output().slice(-3000)).toHaveLength(1);

    // The bucket back: routing moves, and the replica is ready again.
    await cluster.restart(node);
    await until('/readyz 200 again', 60_000, async () => ((await readyz(port)).status === 200 ? true : undefined));
    await until('the backlog routed', 60_000, async () => ((await routerBacklog(jsm, 4)) === 0 ? true : undefined));
    expect((await readyz(port)).status).toBe(200);
  }, 240_000);
});
