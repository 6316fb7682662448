/**
 * The main thread's end of pglite-worker.mjs: one request at a time is not enforced here (the
 * database serialises), but every request gets exactly one answer, and a worker that dies fails
 * what it held instead of leaving callers waiting.
 */
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';

const WORKER_SCRIPT = new URL('./pglite-worker.mjs', import.meta.url);

/** initdb of a new directory in a child process (pglite-worker.mjs says why); a stop kills it. */
export async function initialisePglite(dataDir: string, signal?: AbortSignal): Promise<void> {
  // stdin is a pipe the child watches: a gateway that dies (even by SIGKILL) closes it, and an
  // initdb must not go on writing into the data directory of a process that is gone. A gateway
  // that exits (a fatal start-up error while initdb runs) kills it on the way out.
  const child = spawn(process.execPath, [fileURLToPath(WORKER_SCRIPT), dataDir], { stdio: ['pipe', 'ignore', 'pipe'], signal });
  const killOnExit = () => child.kill('SIGKILL');
  process.once('exit', killOnExit);
  child.once('exit', () => process.removeListener('exit', killOnExit));
  child.stdin.on('error', () => undefined); // EPIPE once the child has exited: nothing to tell it
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => {
    stderr = (stderr + d.toString()).slice(-2000);
  });
  const [code, sig] = await new Promise<[number | null, NodeJS.Signals | null]>((resolve, reject) => {
    child.once('error', (err) => (signal?.aborted ? reject(new Error('stopped while PGlite was initialising')) : reject(err)));
    child.once('exit', (c, s) => resolve([c, s]));
  });
  if (signal?.aborted) throw new Error('stopped while PGlite was initialising');
  if (code !== 0) throw new Error(`PGlite initdb of ${dataDir} failed (${sig ?? `exit ${code}`}): ${stderr.trim().split('\n').at(-1) ?? ''}`);
}

interface Answer {
  id: number;
  rows?: unknown[];
  error?: { message: string; code?: string; detail?: string; constraint?: string };
}

/** An error PGlite raised, with PostgreSQL's fields as pg gives them. */
export class PgliteError extends Error {
  readonly code?: string;
  readonly detail?: string;
  readonly constraint?: string;
  constructor(e: NonNullable<Answer['error']>) {
    super(e.message);
    this.name = 'PgliteError';
    this.code = e.code;
    this.detail = e.detail;
    this.constraint = e.constraint;
  }
}

/** PostgreSQL's buffer pool inside PGlite's WebAssembly heap (pglite-worker.mjs says why not 128 MB). */
export const PGLITE_SHARED_BUFFERS = '32MB';

export class PgliteWorker {
  private nextId = 1;
  private readonly waiting = new Map<number, { resolve: (rows: unknown[]) => void; reject: (err: Error) => void }>();
  private ended: Error | undefined;

  private constructor(private readonly worker: Worker) {
    worker.on('message', (a: Answer) => {
      const w = this.waiting.get(a.id);
      if (!w) return;
      this.waiting.delete(a.id);
      if (a.error) w.reject(new PgliteError(a.error));
      else w.resolve(a.rows ?? []);
    });
    const end = (err: Error) => {
      this.ended ??= err;
      for (const w of this.waiting.values()) w.reject(this.ended);
      this.waiting.clear();
    };
    worker.on('error', end);
    worker.on('exit', (code) => end(new Error(`the PGlite worker exited (code ${code})`)));
  }

  /**
   * Starts the worker and waits for PGlite to be ready (initdb on a new directory); an abort ends
   * the thread at once, so a gateway stopping during a long initdb is not held by it.
   */
  static start(dataDir: string, signal?: AbortSignal, sharedBuffers = PGLITE_SHARED_BUFFERS): Promise<PgliteWorker> {
    const worker = new Worker(WORKER_SCRIPT, { workerData: { dataDir, sharedBuffers } });
    return new Promise((resolve, reject) => {
      const settle = (err: Error | undefined) => {
        worker.off('message', onMessage);
        worker.off('error', settle);
        worker.off('exit', onExit);
        signal?.removeEventListener('abort', onAbort);
        if (!err) return resolve(new PgliteWorker(worker));
        worker.terminate().then(() => reject(err), () => reject(err));
      };
      const onMessage = (m: { ready?: boolean; error?: { message: string } }) => {
        if (m.ready !== undefined) settle(m.ready ? undefined : new Error(m.error?.message ?? 'PGlite did not start'));
      };
      const onExit = (code: number) => settle(new Error(`the PGlite worker exited (code ${code}) while starting`));
      const onAbort = () => settle(new Error('stopped while PGlite was starting'));
      worker.on('message', onMessage);
      worker.on('error', settle);
      worker.on('exit', onExit);
      if (signal?.aborted) onAbort();
      else signal?.addEventListener('abort', onAbort, { once: true });
    });
  }

  query<R>(sql: string, params: unknown[] = []): Promise<R[]> {
    return this.request({ sql, params }) as Promise<R[]>;
  }

  /** Closes the database, then the thread. */
  async close(): Promise<void> {
    try {
      await this.request({ close: true });
    } finally {
      await this.terminate();
    }
  }

  /** Ends the thread at once (a stop that cannot wait for an initdb to finish). */
  async terminate(): Promise<void> {
    await this.worker.terminate();
  }

  private request(body: object): Promise<unknown[]> {
    if (this.ended) return Promise.reject(this.ended);
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      this.waiting.set(id, { resolve, reject });
      this.worker.postMessage({ id, ...body });
    });
  }
}
