/**
 * The routing measurements bench/run.ts and the history phase share: publishing inbound events
 * (bursts and paced), observing the ticket.message events, CPU time of child processes.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import type { NatsConnection } from '@nats-io/transport-node';
import { jetstream, jetstreamManager } from '@nats-io/jetstream';
import { chatMessage } from '../test/helpers/events.js';
import { DEFAULT_PARTITIONS } from '../src/core/bus-provision.js';
import { Subjects, orderKey, partitionOf } from '../src/core/subjects.js';

const WINDOW = 1_000; // publishes in flight
/** router.partitions of the bench's gateways (BENCH_PARTITIONS; run.ts writes it into their config). */
export const BENCH_PARTITIONS = Number(process.env.BENCH_PARTITIONS ?? DEFAULT_PARTITIONS);

/**
 * CPU time (user + system, µs) a process has used so far, from /proc/<pid>/stat (fields 14 and
 * 15, in clock ticks). The gateway and the nats-server are children of this process, so this is
 * the one way to read their process.cpuUsage from outside; CPU per event does not move with the
 * machine's noise the way rates do.
 */
export function cpuMicros(pid: number | undefined): number {
  if (!pid) return NaN;
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // The command name (field 2) may hold spaces: count fields after its closing parenthesis.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return ((Number(fields[11]) + Number(fields[12])) * 1_000_000) / CLOCK_TICKS;
  } catch {
    return NaN;
  }
}
const CLOCK_TICKS = 100; // USER_HZ on Linux (sysconf(_SC_CLK_TCK)); 100 on every mainstream kernel

/**
 * Read and write system calls a process has made so far, and the bytes they moved (syscr, syscw,
 * rchar, wchar of /proc/<pid>/io): how often the gateway goes to its socket per routed event,
 * which the client's batching of writes decides, and how much it sends and reads per event, which
 * the payloads decide (on loopback a write's cost grows with its bytes: the kernel hands them to
 * the receiver inside the call). Neither moves with the machine's noise.
 */
export function ioCalls(pid: number | undefined): IoCounts {
  try {
    const io = readFileSync(`/proc/${pid}/io`, 'utf8');
    const field = (name: string) => Number(new RegExp(`^${name}: (\\d+)$`, 'm').exec(io)?.[1] ?? NaN);
    return { reads: field('syscr'), writes: field('syscw'), readBytes: field('rchar'), writtenBytes: field('wchar') };
  } catch {
    return { reads: NaN, writes: NaN, readBytes: NaN, writtenBytes: NaN };
  }
}

interface IoCounts {
  reads: number;
  writes: number;
  readBytes: number;
  writtenBytes: number;
}

/** CPU µs (and the routers' socket calls) per event of each measured process over a phase. */
export function cpuMeter(pids: { routers: Array<number | undefined>; nats: number | undefined }) {
  const sum = (ps: Array<number | undefined>) => ps.reduce<number>((a, p) => a + cpuMicros(p), 0);
  const calls = (ps: Array<number | undefined>) =>
    ps.map(ioCalls).reduce<IoCounts>((a, c) => ({ reads: a.reads + c.reads, writes: a.writes + c.writes, readBytes: a.readBytes + c.readBytes, writtenBytes: a.writtenBytes + c.writtenBytes }), { reads: 0, writes: 0, readBytes: 0, writtenBytes: 0 });
  const r0 = sum(pids.routers);
  const n0 = cpuMicros(pids.nats);
  const io0 = calls(pids.routers);
  return (events: number) => {
    const io = calls(pids.routers);
    return {
      routerUs: (sum(pids.routers) - r0) / events,
      natsUs: (cpuMicros(pids.nats) - n0) / events,
      routerReads: (io.reads - io0.reads) / events,
      routerWrites: (io.writes - io0.writes) / events,
      routerReadBytes: (io.readBytes - io0.readBytes) / events,
      routerWrittenBytes: (io.writtenBytes - io0.writtenBytes) / events,
    };
  };
}

/**
 * A gateway's metrics (Prometheus text from its /metrics; its address read from the "omnigate
 * started" log line): each metric summed over label sets, NaN when absent (an A/B against an
 * older build). One scrape: prom-client's event-loop gauges cover the time since the previous one.
 */
export async function gatewayMetrics(output: string): Promise<(name: string) => number> {
  const http = /"http":"([^"]+)"[^\n]*"omnigate started"/.exec(output)?.[1];
  const text = http ? await (await fetch(`http://${http}/metrics`)).text() : '';
  const lines = text.split('\n').filter((l) => !l.startsWith('#'));
  return (name) => {
    const values = lines.filter((l) => l.startsWith(name) && (l[name.length] === ' ' || l[name.length] === '{')).map((l) => Number(l.slice(l.lastIndexOf(' ') + 1)));
    return values.length ? values.reduce((a, b) => a + b, 0) : NaN;
  };
}

/**
 * Waits until the gateway's SQL read model has applied every ticket-log entry (its /readyz lag is
 * 0), so the next phase measures routing at its rate, not routing beside the projection catching
 * up on the phase before. Seconds it took; NaN when the build reports no lag (an older one) or it
 * did not catch up within `limitMs`. `token`: one of the gateway's API tokens, without which
 * /readyz gives no details (http.probeDetails).
 */
export async function readModelCaughtUp(output: string, token: string, limitMs = 300_000): Promise<number> {
  const http = /"http":"([^"]+)"[^\n]*"omnigate started"/.exec(output)?.[1];
  if (!http) return NaN;
  const start = performance.now();
  let unanswered = 0;
  while (performance.now() - start < limitMs) {
    const body = (await (await fetch(`http://${http}/readyz`, { headers: { authorization: `Bearer ${token}` } })).json()) as { readModel?: { lag?: number } };
    const lag = body.readModel?.lag;
    // No lag in the answer: a sample that timed out under load, or a build without a read model.
    if (lag === undefined && ++unanswered >= 50) return NaN;
    if (lag === 0) return (performance.now() - start) / 1000;
    await new Promise((r) => setTimeout(r, 200));
  }
  return NaN;
}

export async function rawPublishRate(nc: NatsConnection, payloads: string[]): Promise<number> {
  const jsm = await jetstreamManager(nc);
  await jsm.streams.add({ name: 'BENCH_RAW', subjects: ['bench.raw.>'], duplicate_window: 120_000_000_000 });
  const js = jetstream(nc);
  const start = performance.now();
  let inflight: Promise<unknown>[] = [];
  for (let i = 0; i < payloads.length; i++) {
    inflight.push(js.publish('bench.raw.webhook.load', payloads[i]!, { msgID: `raw-${i}` }));
    if (inflight.length >= WINDOW) {
      await Promise.all(inflight);
      inflight = [];
    }
  }
  await Promise.all(inflight);
  const perS = payloads.length / ((performance.now() - start) / 1000);
  await jsm.streams.delete('BENCH_RAW');
  return perS;
}

export function makeEvents(n: number, conversations: number, tag: string) {
  const events = [];
  for (let i = 0; i < n; i++) {
    const e = chatMessage({ account: 'load', chat: `${tag}-${i % conversations}`, id: `${tag}-${i}`, text: 'Здравствуйте! Не проходит оплата по карте, заказ №48213' });
    // On the conversation's partition, as connectors publish (router.partitions: BENCH_PARTITIONS or the default).
    events.push({ id: e.id, payload: JSON.stringify(e), subject: Subjects.inboundPartition(e.channel, e.account, partitionOf(orderKey(e), BENCH_PARTITIONS)) });
  }
  return events;
}

/** Observes ticket.message events (core subscription: no consumer overhead in the measurement). */
export function observe(nc: NatsConnection) {
  const seen = new Map<string, number>();
  /** When the gateway announced each event (its `at`, epoch ms): where a latency was spent. */
  const announced = new Map<string, number>();
  let onCount: (() => void) | undefined;
  let target = Infinity;
  const sub = nc.subscribe('omni.events.ticket.message');
  // A bad event (or the subscription failing) fails the wait, not the process past its clean-up.
  let failure: Error | undefined;
  let onFailure: ((err: Error) => void) | undefined;
  (async () => {
    for await (const m of sub) {
      const event = m.json() as { id: string; at: string };
      const id = event.id.slice('ticket.message:'.length);
      if (!seen.has(id)) {
        seen.set(id, performance.now());
        announced.set(id, Date.parse(event.at));
      }
      if (seen.size >= target) onCount?.();
    }
  })().catch((err: unknown) => {
    failure = err instanceof Error ? err : new Error(String(err));
    onFailure?.(failure);
  });
  return {
    seen,
    announced,
    waitFor(n: number, timeoutMs: number) {
      target = n;
      if (failure) return Promise.reject(failure);
      if (seen.size >= n) return Promise.resolve();
      return new Promise<void>((resolve, reject) => {
        const t = setTimeout(() => reject(new Error(`only ${seen.size}/${n} events routed within ${timeoutMs} ms`)), timeoutMs);
        onFailure = (err) => {
          clearTimeout(t);
          reject(err);
        };
        onCount = () => {
          clearTimeout(t);
          resolve();
        };
      });
    },
    stop: () => sub.unsubscribe(),
  };
}

export async function routedPhase(nc: NatsConnection, events: Array<{ id: string; payload: string; subject: string }>) {
  const js = jetstream(nc);
  const obs = observe(nc);
  const sent = new Map<string, number>();
  const start = performance.now();
  let inflight: Promise<unknown>[] = [];
  for (const e of events) {
    sent.set(e.id, performance.now());
    inflight.push(js.publish(e.subject, e.payload, { msgID: e.id }));
    if (inflight.length >= WINDOW) {
      await Promise.all(inflight);
      inflight = [];
    }
  }
  await Promise.all(inflight);
  await obs.waitFor(events.length, 300_000);
  const elapsed = (Math.max(...obs.seen.values()) - start) / 1000;
  obs.stop();
  return { perS: events.length / elapsed, latencies: latencies(sent, obs.seen) };
}

export async function pacedPhase(nc: NatsConnection, events: Array<{ id: string; payload: string; subject: string }>, rate: number) {
  const js = jetstream(nc);
  const obs = observe(nc);
  const sent = new Map<string, number>();
  const start = performance.now();
  const tickMs = 10;
  const perTick = Math.max(1, Math.round((rate * tickMs) / 1000));
  let i = 0;
  // Not awaited one by one (the pace would follow the acks), but never left floating: a publish
  // that failed (an ack timeout on a loaded machine) crashed the bench past its clean-up, and its
  // gateways, nats-server and database outlived it. The first failure fails the phase.
  const published: Array<Promise<unknown>> = [];
  let failed: unknown;
  while (i < events.length && failed === undefined) {
    const due = Math.min(events.length, Math.floor(((performance.now() - start) / 1000) * rate) + perTick);
    for (; i < due; i++) {
      const e = events[i]!;
      sent.set(e.id, performance.now());
      published.push(js.publish(e.subject, e.payload, { msgID: e.id }).catch((err: unknown) => (failed ??= err)));
    }
    await new Promise((r) => setTimeout(r, tickMs));
  }
  await Promise.all(published);
  if (failed !== undefined) throw failed;
  await obs.waitFor(events.length, 120_000);
  obs.stop();
  const achieved = events.length / ((performance.now() - start) / 1000);
  // The gateway stamps an event's `at` as it announces it, after the ticket update and before the
  // event's own publish: publish → announced is the way in (JetStream, the router's pull) and the
  // gateway's work; announced → seen is the announcement's way out through NATS to this process.
  // Same machine, same clock; `at` has ms resolution.
  const epochOfZero = epochOffset();
  const announcedAt = new Map([...obs.announced].map(([id, at]) => [id, at - epochOfZero]));
  // BENCH_LATENCY_DUMP=<file>: each event's send time (ms into the phase), its latency and the
  // gateway's share, to tell a tail spread over the phase from stalls that delay all behind them.
  if (process.env.BENCH_LATENCY_DUMP) {
    const rows = [...sent].map(([id, t0]) => `${(t0 - start).toFixed(1)} ${((obs.seen.get(id) ?? NaN) - t0).toFixed(2)} ${((announcedAt.get(id) ?? NaN) - t0).toFixed(1)}`);
    writeFileSync(process.env.BENCH_LATENCY_DUMP, ['# sent (ms into the phase), publish → seen (ms), publish → announced by the gateway (ms)', ...rows].join('\n'));
  }
  return { achieved, latencies: latencies(sent, obs.seen), gatewayLatencies: latencies(sent, announcedAt) };
}

/**
 * The epoch time of performance.now()'s zero, read off Date.now(): performance.timeOrigin can be
 * a millisecond or more away from it. Date.now() truncates to whole ms, so the largest of many
 * readings is the closest.
 */
function epochOffset(): number {
  let best = -Infinity;
  for (let i = 0; i < 2000; i++) best = Math.max(best, Date.now() - performance.now());
  return best;
}

export function latencies(sent: Map<string, number>, seen: Map<string, number>): number[] {
  const out: number[] = [];
  for (const [id, t0] of sent) {
    const t1 = seen.get(id);
    if (t1 !== undefined) out.push(t1 - t0);
  }
  return out.sort((a, b) => a - b);
}

