// Bench-only preload for the soak (bench/soak.ts): on SIGUSR2, collect garbage (node --expose-gc)
// and print the memory that is still held. Never loaded in production.
let seq = 0;
process.on('SIGUSR2', () => {
  if (typeof global.gc === 'function') {
    global.gc();
    global.gc();
  }
  const m = process.memoryUsage();
  process.stdout.write(`SOAK-MEM ${seq++} ${JSON.stringify({ rss: m.rss, heapUsed: m.heapUsed, external: m.external })}\n`);
});
