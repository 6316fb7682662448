/**
 * What one routed event costs in JetStream round trips, by kind: every request the router's hot
 * path makes (JsPipeline: publishes waiting for their ack, direct gets) is counted by subject
 * class over the routed phase of an in-process gateway. The floor under router CPU per event is
 * set by this table (BENCHMARKS.md "One write per event"), not by any one function.
 *
 * `tsx bench/requests-per-event.ts [events] [conversations]`
 */
import { JsPipeline } from '../src/core/js-pipeline.js';
import { startGateway } from '../test/helpers/gateway.js';
import { makeEvents, routedPhase } from './routing.js';

const events = Number(process.argv[2] ?? 5_000);
const conversations = Number(process.argv[3] ?? events / 5);

/** `$KV.omni_tickets.T-1042` → `publish $KV.omni_tickets.<key>`; ids and hashes folded so kinds add up. */
function kindOf(subject: string): string {
  const direct = /^\$JS\.API\.DIRECT\.GET\.[^.]+\.(.*)$/.exec(subject);
  const target = (direct ? direct[1]! : subject)
    .replace(/^(\$KV\.[^.]+\.)(pm|ev|out)\..*$/, '$1$2.<hash>')
    .replace(/^(\$KV\.omni_threads\.)(?!pm\.|ev\.|out\.).*\.floor$/, '$1<conversation>.floor')
    .replace(/^(\$KV\.omni_threads\.)(?!pm\.|ev\.|out\.|<).*$/, '$1<conversation or thread key>')
    .replace(/^(\$KV\.omni_tickets\.|omni\.ticket\.).*$/, '$1<ticket>')
    .replace(/^(omni\.events\.[^.]+\.[^.]+).*$/, '$1');
  return `${direct ? 'get    ' : 'publish'} ${target}`;
}

const counts = new Map<string, { n: number; bytes: number }>();
const proto = JsPipeline.prototype as unknown as { request: (subject: string, data: string | Uint8Array, ...rest: unknown[]) => unknown };
const request = proto.request;
proto.request = function (this: unknown, subject: string, data: string | Uint8Array, ...rest: unknown[]) {
  const kind = kindOf(subject);
  const c = counts.get(kind) ?? { n: 0, bytes: 0 };
  c.n++;
  c.bytes += typeof data === 'string' ? Buffer.byteLength(data) : data.length;
  counts.set(kind, c);
  return request.call(this, subject, data, ...rest);
};

const gw = await startGateway({ router: { concurrency: 512 } });
try {
  await routedPhase(gw.nc, makeEvents(events, conversations, 'r'));
  let total = 0;
  let bytes = 0;
  process.stdout.write(`JetStream requests per routed event (${events} events over ${conversations} conversations), and their payload bytes per event:\n`);
  for (const [kind, c] of [...counts].sort((a, b) => b[1].n - a[1].n)) {
    total += c.n;
    bytes += c.bytes;
    process.stdout.write(`  ${(c.n / events).toFixed(2).padStart(5)}  ${String(Math.round(c.bytes / events)).padStart(5)} B  ${kind}\n`);
  }
  process.stdout.write(`  ${(total / events).toFixed(2).padStart(5)}  ${String(Math.round(bytes / events)).padStart(5)} B  in all\n`);
} finally {
  await gw.stop();
}
