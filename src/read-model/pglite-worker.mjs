// PGlite on its own thread. Its WebAssembly runs synchronously: initdb takes seconds (tens on a
// loaded machine) and a big query as long as it needs, and on the gateway's main thread that froze
// lease renewals, HTTP and even the shutdown timer. Plain JavaScript, so the same file runs from
// src/ under the tests and from dist/ (copied by scripts/copy-assets.mjs).
// Protocol: {id, sql, params} → {id, rows} | {id, error}; {id, close: true} closes the database.
import { parentPort, workerData } from 'node:worker_threads';
import { PGlite } from '@electric-sql/pglite';

const db = new PGlite(workerData.dataDir);
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
