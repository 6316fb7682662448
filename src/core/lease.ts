/**
 * Single-runner leases in a KV bucket whose TTL expires a dead holder's key. Connectors that must
 * run once per account across replicas (Telegram polling, an IMAP mailbox, a WhatsApp session)
 * hold one. Works on 2.9.10: bucket max_age, create() and update(revision) only.
 */
import type { KV } from '@nats-io/kv';
import type { Logger } from 'pino';
import { sleep } from './sleep.js';

export interface Lease {
  readonly key: string;
  /** Resolves when the lease was lost (not renewed in time, or taken over). */
  readonly lost: Promise<void>;
  release(): Promise<void>;
}

export interface LeaseOptions {
  ttlMs: number;
  holder: string;
  signal?: AbortSignal;
  log?: Logger;
}

/** Waits until the lease is ours, then keeps renewing it until released or lost. */
export async function acquireLease(kv: KV, key: string, o: LeaseOptions): Promise<Lease> {
  const renewEvery = Math.max(250, Math.floor(o.ttlMs / 3));
  let revision = 0;
  while (!o.signal?.aborted) {
    revision = await tryTake(kv, key, o.holder);
    if (revision > 0) break;
    await sleep(renewEvery, o.signal);
  }
  if (o.signal?.aborted) throw new Error(`lease ${key}: aborted while waiting`);

  let onLost!: () => void;
  const lost = new Promise<void>((r) => (onLost = r));
  let released = false;
  const timer = setInterval(() => {
    kv.update(key, o.holder, revision)
      .then((rev) => (revision = rev))
      .catch((err) => {
        if (released) return;
        clearInterval(timer);
        o.log?.warn({ key, err: String(err) }, 'lease lost');
        onLost();
      });
  }, renewEvery);
  timer.unref();
  return {
    key,
    lost,
    async release() {
      released = true;
      clearInterval(timer);
      try {
        await kv.delete(key, { previousSeq: revision });
      } catch {
        /* already taken over or expired */
      }
    },
  };
}

async function tryTake(kv: KV, key: string, holder: string): Promise<number> {
  try {
    return await kv.create(key, holder);
  } catch {
    const entry = await kv.get(key);
    if (entry && entry.operation === 'PUT' && entry.string() === holder) {
      try {
        return await kv.update(key, holder, entry.revision);
      } catch {
        return 0;
      }
    }
    return 0;
  }
}
