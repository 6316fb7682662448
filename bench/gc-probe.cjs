// Bench-only preload for the soak (bench/soak.ts): on SIGUSR2, collect garbage (node --expose-gc)
// and print the memory that is still held. Never loaded in production.
// The main thread's heap is not all of it: the read model's PGlite runs in a worker thread with a
// V8 heap of its own (and its WebAssembly memory), counted in RSS only. Each worker is recorded as
// it is made, so the probe can add its heap (worker.getHeapStatistics, Node >= 22.16): not
// collected first (another thread's GC cannot be asked for from here), so it is an upper bound.
const threads = require('node:worker_threads');
const workers = new Set();
class ProbedWorker extends threads.Worker {
  constructor(...args) {
    super(...args);
    workers.add(this);
    this.once('exit', () => workers.delete(this));
  }
}
// Before any ESM import of node:worker_threads, which then takes this binding.
threads.Worker = ProbedWorker;

async function workerHeaps() {
  let used = 0;
  let total = 0;
  for (const w of workers) {
    if (typeof w.getHeapStatistics !== 'function') return {};
    // A worker still starting or already ending has no heap to report.
    const s = await w.getHeapStatistics().catch(() => undefined);
    if (!s) continue;
    used += s.used_heap_size;
    total += s.total_heap_size;
  }
  return { workers: workers.size, workerHeapUsed: used, workerHeapTotal: total };
}

let seq = 0;
process.on('SIGUSR2', () => {
  if (typeof global.gc === 'function') {
    global.gc();
    global.gc();
  }
  const m = process.memoryUsage();
  const n = seq++;
  workerHeaps().then(
    (w) => process.stdout.write(`SOAK-MEM ${n} ${JSON.stringify({ rss: m.rss, heapUsed: m.heapUsed, heapTotal: m.heapTotal, external: m.external, ...w })}\n`),
    (err) => process.stdout.write(`SOAK-MEM ${n} ${JSON.stringify({ rss: m.rss, heapUsed: m.heapUsed, heapTotal: m.heapTotal, external: m.external, workerError: String(err) })}\n`),
  );
});
