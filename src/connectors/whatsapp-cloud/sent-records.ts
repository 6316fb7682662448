/**
 * wamid → {outboundId, ticketId} for what we sent, so Meta's status webhooks become delivery
 * reports. Kept in the account state; a record goes once its final status (read, failed) is
 * reported, and a daily sweep removes what never got one (read receipts off, say) after the
 * retention.
 *
 * Keys are `wac-out-<base64url(wamid)>`: AccountState hashes keys with characters outside
 * [A-Za-z0-9_=-] (a wamid has dots), which would lose the prefix the sweep lists by. Records
 * written before that (`wac-out-<wamid>`, hashed whole) are still found, and swept by content.
 */
import { createHash } from 'node:crypto';
import { errorMessage } from '../../core/errors.js';
import { sleep } from '../../core/sleep.js';
import type { AccountState } from '../contract.js';
import type { Logger } from '../../core/logger.js';

const PREFIX = 'wac-out-';
/** What a key AccountState hashed looks like: sha256 in base64url. */
const HASHED = /^[A-Za-z0-9_-]{43}$/;

export interface OutboundRef {
  outboundId: string;
  ticketId: string;
  /** Epoch ms when the record was written; absent in records from before retention existed. */
  at?: number;
}

export function recordKey(wamid: string): string {
  const encoded = Buffer.from(wamid).toString('base64url');
  return encoded.length <= 180 ? `${PREFIX}${encoded}` : `${PREFIX}h-${createHash('sha256').update(wamid).digest('base64url')}`;
}

const legacyKey = (wamid: string) => `${PREFIX}${wamid}`;

function parseRef(value: string): OutboundRef | null {
  try {
    const v = JSON.parse(value) as Partial<OutboundRef>;
    return typeof v?.outboundId === 'string' && typeof v.ticketId === 'string' ? (v as OutboundRef) : null;
  } catch {
    return null;
  }
}

export class SentRecords {
  constructor(
    private readonly state: AccountState,
    private readonly log: Logger,
  ) {}

  async record(wamid: string, ref: Omit<OutboundRef, 'at'>): Promise<void> {
    await this.state.put(recordKey(wamid), JSON.stringify({ ...ref, at: Date.now() } satisfies OutboundRef));
  }

  /**
   * The record for `wamid`, waiting up to `waitMs` for it: Meta may post a status before the
   * send that produced the wamid has stored its record (the Graph answer and the webhook race,
   * and the webhook may land on another replica).
   */
  async find(wamid: string, waitMs: number, signal: AbortSignal): Promise<{ key: string; ref: OutboundRef } | null> {
    const deadline = Date.now() + waitMs;
    for (let pause = 100; ; pause *= 2) {
      for (const key of [recordKey(wamid), legacyKey(wamid)]) {
        const entry = await this.state.get(key);
        const ref = entry ? parseRef(entry.value) : null;
        if (ref) return { key, ref };
      }
      const left = deadline - Date.now();
      if (left <= 0 || signal.aborted) return null;
      await sleep(Math.min(pause, left), signal);
    }
  }

  async forget(key: string): Promise<void> {
    await this.state.delete(key).catch((err) => {
      this.log.warn({ err: errorMessage(err) }, 'could not remove a finished WhatsApp Cloud send record; the sweep will');
    });
  }

  /** One pass over the account's records; returns how many were removed. */
  async sweep(retentionMs: number, signal: AbortSignal): Promise<number> {
    const cutoff = Date.now() - retentionMs;
    let removed = 0;
    for (const key of await this.state.keys()) {
      if (signal.aborted) break;
      if (!key.startsWith(PREFIX) && !HASHED.test(key)) continue;
      const entry = await this.state.get(key);
      const ref = entry ? parseRef(entry.value) : null;
      if (!ref) continue;
      if (ref.at === undefined) {
        // Written before records carried a time: its retention starts now.
        await this.state.put(key, JSON.stringify({ ...ref, at: Date.now() }));
      } else if (ref.at < cutoff) {
        await this.state.delete(key);
        removed++;
      }
    }
    return removed;
  }
}
