/**
 * `npm run bench -- --cluster`: three gateway replicas (dist/cli.js) on a three-node nats-server
 * cluster with `nats.replicas: 3`, fed through the HTTP channel (test/cluster/fleet.ts: a reply
 * per ticket, a ticket-event webhook), then the same load with faults:
 *  1. raw      — bare JetStream publishes to an R3 stream on the same cluster (the ratio's base);
 *  2. steady   — BENCH_CLUSTER_EVENTS messages at BENCH_CLUSTER_RATE/s: events/s through the three
 *                replicas, p50/p99 from the 202 to the event at the webhook receiver, CPU and RSS
 *                per gateway process (from /proc);
 *  3. node     — kill -9 of the OMNI_IN leader mid-load, back after 10 s: the delay it cost;
 *  4. takeover — kill -9 of the replica delivering the webhook: time to the first POST of the next.
 * Every phase ends with Fleet.verify(): problems (loss, duplicates, inversions) are printed.
 * The last line is one JSON object for scripts.
 */
import { readFileSync } from 'node:fs';
import { connect } from '@nats-io/transport-node';
import { jetstream, jetstreamManager } from '@nats-io/jetstream';
import { Fleet, type FleetReport } from '../test/cluster/fleet.js';

const EVENTS = Number(process.env.BENCH_CLUSTER_EVENTS ?? 800);
const RATE = Number(process.env.BENCH_CLUSTER_RATE ?? 40);
const LEASE_TTL = process.env.BENCH_CLUSTER_LEASE_TTL ?? '15s';
const CONVERSATIONS = Number(process.env.BENCH_CLUSTER_CONVERSATIONS ?? 120);
const say = (s: string) => process.stdout.write(`${s}\n`);
const CLOCK_TICKS = 100; // USER_HZ on Linux

function cpuSeconds(pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
  return (Number(fields[11]) + Number(fields[12])) / CLOCK_TICKS; // utime + stime
}

function rssMb(pid: number): number {
  const kb = Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? NaN);
  return kb / 1024;
}

async function rawR3Rate(fleet: Fleet, n: number): Promise<number> {
  const nc = await connect({ servers: fleet.cluster.urls });
  const jsm = await jetstreamManager(nc);
  await jsm.streams.add({ name: 'BENCH_RAW', subjects: ['bench.raw.>'], num_replicas: 3, duplicate_window: 120_000_000_000 });
  const js = jetstream(nc);
  const payload = JSON.stringify({ text: 'Здравствуйте! Не проходит оплата по карте, заказ №48213'.repeat(4) });
  const start = performance.now();
  let inflight: Promise<unknown>[] = [];
  for (let i = 0; i < n; i++) {
    inflight.push(js.publish('bench.raw.x', payload, { msgID: `raw-${i}` }));
    if (inflight.length >= 500) inflight = (await Promise.all(inflight), []);
  }
  await Promise.all(inflight);
  const perS = n / ((performance.now() - start) / 1000);
  await jsm.streams.delete('BENCH_RAW');
  await nc.close();
  return perS;
}

function line(name: string, r: FleetReport, extra = ''): void {
  say(`${name}: ${r.sent} sent, ${r.logged} logged once, ${r.tickets} tickets, ${r.replies} replies (${r.replyRepeats} repeats), webhook p50 ${r.p50} ms p99 ${r.p99} ms max ${r.max} ms${extra}${r.problems.length ? `; PROBLEMS: ${r.problems.join('; ')}` : ''}`);
}

export async function clusterMain(): Promise<void> {
  const result: Record<string, unknown> = { events: EVENTS, rate: RATE };
  let offset = 0;
  const ids: string[] = [];

  const fleet = new Fleet({ leaseTtl: LEASE_TTL });
  try {
    await fleet.start(3);
    say(`omnigate cluster bench: 3 nats-servers, 3 gateways, replicas 3; ${EVENTS} messages over ${CONVERSATIONS} conversations at ${RATE}/s through the HTTP channel`);
    const raw = await rawR3Rate(fleet, 20_000);
    say(`raw JetStream publish to an R3 stream: ${Math.round(raw)}/s`);
    result.raw_r3_per_s = Math.round(raw);

    const pids = fleet.gateways.map((g) => g!.process.child.pid!);
    const cpu0 = pids.map(cpuSeconds);
    const t0 = performance.now();
    ids.push(...(await fleet.load({ total: EVENTS, conversations: CONVERSATIONS, perSecond: RATE })));
    offset += EVENTS;
    const steady = await fleet.verify(ids, 300_000);
    const seconds = (performance.now() - t0) / 1000;
    const cpu = pids.map((p, i) => (cpuSeconds(p) - cpu0[i]!) / seconds);
    const rss = pids.map(rssMb);
    const perS = EVENTS / seconds;
    line('steady', steady, `; ${Math.round(perS)} events/s end to end (${(perS / raw * 100).toFixed(1)}% of raw R3); CPU per gateway ${cpu.map((c) => `${(c * 100).toFixed(0)}%`).join(' / ')}, RSS ${rss.map((m) => m.toFixed(0)).join(' / ')} MB; ${(cpu.reduce((a, b) => a + b, 0) * 1000 / perS).toFixed(2)} ms CPU per event (all gateways)`);
    result.steady = { ...steady, per_s: Math.round(perS), cpu_per_gateway: cpu.map((c) => Number(c.toFixed(3))), rss_mb: rss.map((m) => Math.round(m)) };

    let victim = -1;
    const nodeIds = await fleet.load({
      total: EVENTS, conversations: CONVERSATIONS, perSecond: RATE, from: offset,
      during: async () => {
        await new Promise((r) => setTimeout(r, 3000));
        victim = await fleet.cluster.streamLeader('OMNI_IN');
        await fleet.cluster.kill(victim, 'SIGKILL');
        await new Promise((r) => setTimeout(r, 10_000));
        await fleet.cluster.restart(victim);
      },
    });
    offset += EVENTS;
    ids.push(...nodeIds);
    const node = await fleet.verify(ids, 300_000);
    line(`node kill -9 (n${victim + 1}, OMNI_IN leader, back after 10 s)`, node);
    result.node_kill = node;

    const oldToken = Math.max(...fleet.hook.map((p) => p.token));
    const holderPid = await webhookHolderPid(fleet);
    const holder = fleet.gateways.findIndex((g) => g?.process.child.pid === holderPid);
    let takeoverMs = NaN;
    const takeIds = await fleet.load({
      total: Math.min(EVENTS, RATE * 15), conversations: CONVERSATIONS, perSecond: RATE, from: offset,
      during: async () => {
        await new Promise((r) => setTimeout(r, 2000));
        const killedAt = Date.now();
        await fleet.stopGateway(holder, 'SIGKILL');
        while (!fleet.hook.some((p) => p.token > oldToken)) await new Promise((r) => setTimeout(r, 20));
        takeoverMs = fleet.hook.find((p) => p.token > oldToken)!.at - killedAt;
      },
    });
    ids.push(...takeIds);
    const takeover = await fleet.verify(ids, 300_000);
    line(`gateway kill -9 (webhook holder, leaseTtl ${LEASE_TTL}): takeover ${takeoverMs} ms`, takeover);
    result.gateway_kill = { ...takeover, takeover_ms: takeoverMs };
  } finally {
    await fleet.stop();
  }
  say(JSON.stringify(result));
}

async function webhookHolderPid(fleet: Fleet): Promise<number> {
  const nc = await connect({ servers: fleet.cluster.urls });
  try {
    const { Kvm } = await import('@nats-io/kv');
    const kv = await new Kvm(jetstream(nc)).open('omni_leases');
    const e = await kv.get('webhook.helpdesk');
    return Number(e?.string().split('-')[0]);
  } finally {
    await nc.close();
  }
}
