/**
 * What routing allocates, by site: a sampling heap profile that keeps objects the GC already
 * collected (which V8's default leaves out), over the routed phase of an in-process gateway.
 * Garbage, not what stays, is what makes the scavenges behind the p99 tail (BENCHMARKS.md).
 *
 * `tsx bench/alloc-profile.ts [events] [out.heapprofile]`: prints the top sites by the nearest
 * frame of this project and writes the profile (open it in Chrome DevTools, Memory tab). The
 * publisher runs in the same process: its sites (bench/, test/) are listed, not mixed in.
 *
 * `ALLOC_SURVIVORS=<events/s>`: instead, what outlives the young generation (a scavenge copies
 * it, and the copying is the pause a message in flight waits for), with the events paced at that
 * rate as in the bench's latency phase: objects a minor GC collected are left out.
 */
import { Session } from 'node:inspector/promises';
import { writeFileSync } from 'node:fs';
import { startGateway } from '../test/helpers/gateway.js';
import { makeEvents, pacedPhase, routedPhase } from './routing.js';

interface ProfileNode {
  callFrame: { functionName: string; url: string; lineNumber: number };
  selfSize: number;
  children: ProfileNode[];
}

const events = Number(process.argv[2] ?? 10_000);
const out = process.argv[3] ?? '/tmp/omnigate-routing.heapprofile';
const pacedRate = Number(process.env.ALLOC_SURVIVORS ?? 0);
const gw = await startGateway({ router: { concurrency: 512 } });
try {
  await routedPhase(gw.nc, makeEvents(2_000, 400, 'warm'));
  const session = new Session();
  session.connect();
  // The two include flags exist in Node 20's V8; the typings do not know them yet.
  await session.post('HeapProfiler.startSampling', { samplingInterval: 4096, includeObjectsCollectedByMajorGC: true, includeObjectsCollectedByMinorGC: !pacedRate } as { samplingInterval: number });
  const measured = makeEvents(events, Math.max(1, events / 5), 'r');
  if (pacedRate) await pacedPhase(gw.nc, measured, pacedRate);
  else await routedPhase(gw.nc, measured);
  const { profile } = (await session.post('HeapProfiler.stopSampling')) as { profile: { head: ProfileNode } };
  writeFileSync(out, JSON.stringify(profile));
  const bySite = new Map<string, number>();
  let total = 0;
  const walk = (n: ProfileNode, site: string) => {
    const url = n.callFrame.url.replace(/.*\/(?=(src|bench|test)\/)/, '');
    const here = /^(src|bench|test)\//.test(url) ? `${n.callFrame.functionName || '(anonymous)'} ${url}` : site;
    total += n.selfSize;
    bySite.set(here, (bySite.get(here) ?? 0) + n.selfSize);
    for (const c of n.children) walk(c, here);
  };
  walk(profile.head, '(no project frame: client and runtime)');
  console.log(`${pacedRate ? `outlived a scavenge while routing ${events} events at ${pacedRate}/s` : `allocated while routing ${events} events`}: ${(total / 1e6).toFixed(0)} MB (${(total / events / 1024).toFixed(1)} KB per event, publisher included); profile: ${out}`);
  for (const [site, bytes] of [...bySite].sort((a, b) => b[1] - a[1]).slice(0, 25)) console.log(`${((100 * bytes) / total).toFixed(1).padStart(5)} %  ${site}`);
} finally {
  await gw.stop();
}
process.exit(0);
