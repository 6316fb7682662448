// PGlite on its own thread. Its WebAssembly runs synchronously: initdb takes seconds (tens on a
// loaded machine) and a big query as long as it needs, and on the gateway's main thread that froze
// lease renewals, HTTP and even the shutdown timer. Plain JavaScript, so the same file runs from
// src/ under the tests and from dist/ (copied by scripts/copy-assets.mjs).
// As a process of its own it only initialises a directory (below).
// Protocol: {id, sql, params} → {id, rows} | {id, error}; {id, close: true} closes the database.
import { parentPort, workerData } from 'node:worker_threads';
import { PGlite } from '@electric-sql/pglite';

// Run as a process of its own (`node pglite-worker.mjs <dataDir>`): initdb only, then exit. initdb
// grows the WebAssembly heap to ~800 MB; a heap never shrinks and a thread's memory was not all
// given back to the system either, but an ended process's is.
if (!parentPort) {
  // The gateway holds our stdin open; its end means the gateway is gone.
  process.stdin.on('end', () => process.exit(1));
  process.stdin.resume();
  const fresh = new PGlite(process.argv[2]);
  await fresh.waitReady;
  await fresh.close();
  process.exit(0);
}

// shared_buffers: PostgreSQL's 128 MB default lives in the WebAssembly heap, which never shrinks;
// 32 MB took a reopened 100k-ticket directory from ~300 to ~200 MB RSS (BENCHMARKS.md, History).
// Given on the command line, not in postgresql.conf, so the directory stays as initdb made it.
const startParams = Array.isArray(PGlite.defaultStartParams) && workerData.sharedBuffers
  ? [...PGlite.defaultStartParams, '-c', `shared_buffers=${workerData.sharedBuffers}`]
  : undefined;
const db = new PGlite({ dataDir: workerData.dataDir, ...(startParams ? { startParams } : {}) });
const ready = db.waitReady.then(
  () => parentPort.postMessage({ ready: true }),
  (err) => parentPort.postMessage({ ready: false, error: describe(err) }),
);

// One statement at a time, in arrival order (the main thread serialises transactions already).
let chain = ready;
parentPort.on('message', (request) => {
  chain = chain.then(() => handle(request));
});

async function handle({ id, sql, params, close }) {
  try {
    if (close) {
      await db.close();
      parentPort.postMessage({ id, rows: [] });
      return;
    }
    const result = await db.query(sql, params);
    parentPort.postMessage({ id, rows: result.rows });
  } catch (err) {
    parentPort.postMessage({ id, error: describe(err) });
  }
}

function describe(err) {
  if (!(err instanceof Error)) return { message: String(err) };
  return { message: err.message, code: err.code, detail: err.detail, constraint: err.constraint };
}
