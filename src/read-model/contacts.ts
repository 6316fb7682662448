/**
 * Contacts across channels. A contact is a person; an identity is how one platform knows them
 * (a phone, an email address, a Telegram user id, a WhatsApp LID, a Slack user). Identities join a
 * contact only where the platform proves them:
 *
 * - the sender's own platform id (Telegram user, Slack user, the WhatsApp JID's phone or LID, the
 *   mailbox of an email) — the platform authenticated who wrote;
 * - a Telegram contact card whose user id is the sender's own: Telegram attaches the phone of the
 *   account that shares it, so it proves the sender's phone;
 * - the email of a Slack profile (Slack verifies it).
 *
 * Two contacts that turn out to share a proven identity are merged automatically (the older one
 * stays). Everything else — the same display name, an email typed into a chat, a webhook client's
 * claimed phone — is never a reason to link; people merge such contacts through the API.
 */
import { createHash } from 'node:crypto';
import type { InboundMessage } from '../core/schema.js';
import type { BatchMemory } from './batch-memory.js';
import type { Queryable } from './database.js';
// The one normaliser of phones (also "8 916 …" → +7 916 …), shared with lookups and erasure.
import { normalizePhone } from '../core/phone.js';

export const IDENTITY_KINDS = ['phone', 'email', 'telegram_user', 'whatsapp_lid', 'slack_user', 'external'] as const;
export type IdentityKind = (typeof IDENTITY_KINDS)[number];

export interface ProvenIdentity {
  kind: IdentityKind;
  scope: string;
  value: string;
  channel: string;
  account: string;
  proof: 'sender' | 'contact_card' | 'profile' | 'api';
}

export function normalizeEmail(raw: string): string | undefined {
  const v = raw.trim().toLowerCase();
  return /^[^\s@]+@[^\s@]+$/.test(v) ? v : undefined;
}

/** The identities this message proves for its sender; the first is the sender's primary one. */
export function provenIdentities(e: InboundMessage): ProvenIdentity[] {
  const at = { channel: e.channel, account: e.account };
  const s = e.sender;
  const out: ProvenIdentity[] = [];
  const add = (kind: IdentityKind, value: string | undefined, proof: ProvenIdentity['proof'], scope = '') => {
    if (value && !out.some((i) => i.kind === kind && i.scope === scope && i.value === value)) out.push({ kind, scope, value, proof, ...at });
  };
  switch (e.channel) {
    case 'telegram':
      add('telegram_user', s.id, 'sender');
      for (const p of e.parts) {
        if (p.type === 'contact' && p.userId === s.id && p.phone) add('phone', normalizePhone(p.phone), 'contact_card');
      }
      break;
    case 'whatsapp':
      add('phone', s.handles.phone ? normalizePhone(s.handles.phone) : undefined, 'sender');
      add('whatsapp_lid', s.handles.lid, 'sender');
      break;
    case 'slack':
      add('slack_user', s.id, 'sender', e.account);
      add('email', s.handles.email ? normalizeEmail(s.handles.email) : undefined, 'profile');
      break;
    case 'email':
      add('email', normalizeEmail(s.handles.email ?? s.id), 'sender');
      break;
    default:
      break;
  }
  // Whatever the platform: its own id of the sender, scoped to the account that saw it.
  if (out.length === 0) add('external', s.id, 'sender', `${e.channel}/${e.account}`);
  return out;
}

/** Deterministic, so a rebuild from the log gives every contact the id it had (and API merges still apply). */
export function contactIdFor(i: { kind: string; scope: string; value: string }): string {
  return `c_${createHash('sha256').update(`${i.kind}\n${i.scope}\n${i.value}`).digest('base64url').slice(0, 20)}`;
}

/**
 * The contact of a message's sender: found by any proven identity, created when new; identities
 * the message proves are added, and contacts they show to be one person are merged. Returns the
 * root contact id.
 */
export async function resolveContact(tx: Queryable, e: InboundMessage, at: string, memory?: BatchMemory): Promise<string> {
  const ids = provenIdentities(e);
  // A sender the batch already knows in full (every identity in, one contact, named): nothing to write.
  const known = memory?.knownSender(ids, e.sender.displayName, at);
  if (known !== undefined) return known;
  // A sender none of whose identities SQL had when the batch began: no lookup needed.
  const found = memory?.unknownSender(ids)
    ? []
    : await tx.query<{ root: string; created_at: string }>(
      `SELECT DISTINCT coalesce(c.merged_into, c.id) AS root, r.created_at
         FROM contact_identities i JOIN contacts c ON c.id = i.contact_id JOIN contacts r ON r.id = coalesce(c.merged_into, c.id)
        WHERE (i.kind, i.scope, i.value) IN (SELECT * FROM unnest($1::text[], $2::text[], $3::text[]))
        ORDER BY r.created_at, root`,
      [ids.map((i) => i.kind), ids.map((i) => i.scope), ids.map((i) => i.value)],
    );
  let root: string;
  let create = false;
  if (found.length === 0) {
    root = contactIdFor(ids[0]!);
    create = true;
    const prefetched = memory?.mergedInto(root);
    const into = prefetched !== undefined ? prefetched : (await tx.query<{ into_id: string }>('SELECT into_id FROM contact_merges WHERE from_id = $1', [root]))[0]?.into_id;
    // A rebuild: a person had merged this contact before; the target exists once its own first message is applied.
    if (into && (await tx.query('SELECT 1 FROM contacts WHERE id = $1', [into])).length) {
      await tx.query(`INSERT INTO contacts (id, display_name, created_at, updated_at) VALUES ($1, $2, $3, $3) ON CONFLICT (id) DO NOTHING`, [root, e.sender.displayName ?? null, at]);
      await mergeContacts(tx, root, into, at, null);
      memory?.forgetSenders();
      root = into;
      create = false;
    }
  } else {
    root = found[0]!.root;
    for (const other of found.slice(1)) await mergeContacts(tx, other.root, root, at, null);
    if (found.length > 1) memory?.forgetSenders();
  }
  await writeSender(tx, root, create, ids, e.sender.displayName, at);
  memory?.learnSender(ids, root, Boolean(e.sender.displayName));
  return root;
}

/**
 * In one statement: the contact when new, the identities this message proves (those already
 * known stay with their contact), and a name the contact lacked. A new contact's row is inserted
 * with the name and time already, so the update (which cannot see it in the same statement)
 * changes only a contact that existed.
 */
async function writeSender(tx: Queryable, root: string, create: boolean, ids: ProvenIdentity[], displayName: string | undefined, at: string): Promise<void> {
  await tx.query(
    `WITH created AS (
       INSERT INTO contacts (id, display_name, created_at, updated_at) SELECT $1, $2, $3::timestamptz, $3::timestamptz WHERE $4::boolean
       ON CONFLICT (id) DO NOTHING RETURNING 1
     ), proven AS (
       INSERT INTO contact_identities (contact_id, kind, scope, value, channel, account, proof, created_at)
       SELECT $1, kind, scope, value, channel, account, proof, $3::timestamptz
         FROM unnest($5::text[], $6::text[], $7::text[], $8::text[], $9::text[], $10::text[]) AS i(kind, scope, value, channel, account, proof)
       ON CONFLICT (kind, scope, value) DO NOTHING RETURNING 1
     )
     UPDATE contacts SET display_name = coalesce(display_name, $2), updated_at = greatest(updated_at, $3::timestamptz) WHERE id = $1 AND $2::text IS NOT NULL`,
    [root, displayName ?? null, at, create, ids.map((i) => i.kind), ids.map((i) => i.scope), ids.map((i) => i.value), ids.map((i) => i.channel), ids.map((i) => i.account), ids.map((i) => i.proof)],
  );
}

/**
 * `from` (and everything merged into it) becomes part of `into`. Rows keep their contact id; readers
 * go through contacts.merged_into, which always names a root, so a merge is two small updates.
 * `by` is set for merges people make (kept across rebuilds in contact_merges).
 */
export async function mergeContacts(tx: Queryable, from: string, into: string, at: string, by: string | null): Promise<void> {
  if (from === into) return;
  await tx.query('UPDATE contacts SET merged_into = $2, updated_at = $3 WHERE id = $1 OR merged_into = $1', [from, into, at]);
  await tx.query('UPDATE contacts SET display_name = coalesce(display_name, (SELECT display_name FROM contacts WHERE id = $2)), updated_at = $3 WHERE id = $1', [into, from, at]);
  if (by !== null) {
    await tx.query(
      `INSERT INTO contact_merges (from_id, into_id, at, by) VALUES ($1, $2, $3, $4) ON CONFLICT (from_id) DO UPDATE SET into_id = $2, at = $3, by = $4`,
      [from, into, at, by],
    );
    // Earlier merges into `from` now lead to `into`, so a rebuild lands everything on the same root.
    await tx.query('UPDATE contact_merges SET into_id = $2 WHERE into_id = $1', [from, into]);
  }
}
