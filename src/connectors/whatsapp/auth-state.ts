/**
 * Baileys auth state kept durably in the account's KV state (omni_state), so a restart, or
 * another replica taking the session over, resumes the linked device without a new pairing.
 * Creds and every Signal key are JSON with BufferJSON (Buffers survive the round trip).
 *
 * Keys are written as `wa-auth-<base64url(type/id)>`: AccountState hashes keys with characters
 * outside [A-Za-z0-9_=-], which would lose the prefix; encoding ourselves keeps every auth key
 * findable by prefix, so a logout can clear them all.
 */
import { createHash } from 'node:crypto';
import type { AccountState } from '../contract.js';
import {
  BufferJSON,
  initAuthCreds,
  proto,
  type AuthenticationCreds,
  type AuthenticationState,
  type SignalDataSet,
  type SignalDataTypeMap,
} from './baileys.js';

export const AUTH_PREFIX = 'wa-auth-';
const CREDS_KEY = `${AUTH_PREFIX}creds`;

function keyFor(type: string, id: string): string {
  const encoded = Buffer.from(`${type}/${id}`).toString('base64url');
  // AccountState keys are capped at 200 characters; long ids are hashed, still under our prefix.
  return encoded.length <= 180
    ? `${AUTH_PREFIX}k-${encoded}`
    : `${AUTH_PREFIX}h-${createHash('sha256').update(`${type}/${id}`).digest('base64url')}`;
}

export interface KvAuth {
  state: AuthenticationState;
  /** True when creds came from storage (a linked device), false for a fresh pairing. */
  restored: boolean;
  saveCreds(): Promise<void>;
}

export async function loadKvAuth(store: AccountState): Promise<KvAuth> {
  const read = async <T>(key: string): Promise<T | null> => {
    const entry = await store.get(key);
    return entry ? (JSON.parse(entry.value, BufferJSON.reviver) as T) : null;
  };
  const stored = await read<AuthenticationCreds>(CREDS_KEY);
  const creds = stored ?? initAuthCreds();
  return {
    restored: !!stored,
    state: {
      creds,
      keys: {
        async get<T extends keyof SignalDataTypeMap>(type: T, ids: string[]) {
          const out: { [id: string]: SignalDataTypeMap[T] } = {};
          await Promise.all(
            ids.map(async (id) => {
              let value = await read<unknown>(keyFor(type, id));
              if (value && type === 'app-state-sync-key') value = proto.Message.AppStateSyncKeyData.fromObject(value as object);
              if (value) out[id] = value as SignalDataTypeMap[T];
            }),
          );
          return out;
        },
        async set(data: SignalDataSet) {
          const writes: Promise<unknown>[] = [];
          for (const [type, entries] of Object.entries(data)) {
            for (const [id, value] of Object.entries(entries ?? {})) {
              const key = keyFor(type, id);
              writes.push(value ? store.put(key, JSON.stringify(value, BufferJSON.replacer)) : store.delete(key));
            }
          }
          await Promise.all(writes);
        },
      },
    },
    saveCreds: async () => {
      await store.put(CREDS_KEY, JSON.stringify(creds, BufferJSON.replacer));
    },
  };
}

/** Forget the linked device: creds and every Signal key. The next socket asks for a new pairing. */
export async function clearKvAuth(store: AccountState): Promise<number> {
  const keys = await store.keys(AUTH_PREFIX);
  await Promise.all(keys.map((k) => store.delete(k)));
  return keys.length;
}
