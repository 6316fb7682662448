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

const counts = new Map<string, number>();
const proto = JsPipeline.prototype as unknown as { request: (subject: string, ...rest: unknown[]) => unknown };
const request = proto.request;
proto.request = function (this: unknown, subject: string, ...rest: unknown[]) {
  const kind = kindOf(subject);
  counts.set(kind, (counts.get(kind) ?? 0) + 1);
  return request.call(this, subject, ...rest);
};

const gw = await startGateway({ router: { concurrency: 512 } });
try {
  await routedPhase(gw.nc, makeEvents(events, conversations, 'r'));
  let total = 0;
  process.stdout.write(`JetStream requests per routed event (${events} events over ${conversations} conversations):\n`);
  for (const [kind, n] of [...counts].sort((a, b) => b[1] - a[1])) {
    total += n;
    process.stdout.write(`  ${(n / events).toFixed(2).padStart(5)}  ${kind}\n`);
  }
  process.stdout.write(`  ${(total / events).toFixed(2).padStart(5)}  in all\n`);
} finally {
  await gw.stop();
}
