/**
 * The read model's schema, as ordered migrations applied at start. Each runs once, in its own
 * transaction, recorded in schema_migrations; on PostgreSQL a transaction-level advisory lock
 * makes replicas starting together apply them one after another (the second finds them done).
 *
 * Everything here is a projection of the ticket log (stream OMNI_LOG, omni.ticket.<id>.log): drop
 * the tables and the projection rebuilds them (docs/data.md), except contact_merges, which records
 * merges made by people through the API and is kept across a rebuild.
 */
import type { Database, Queryable } from './database.js';

/** Advisory-lock keys (any 64-bit number; fixed so every replica uses the same). */
export const MIGRATION_LOCK_KEY = 0x6f6d6e69; // "omni"
export const APPLIER_LOCK_KEY = 0x6f6d6e70;

/** The projection_checkpoint row of the ticket log (projection.ts; erasure.ts keeps its counts). */
export const CHECKPOINT_NAME = 'ticket-log';

/** Text search configurations: Russian and English stemming over every text we index. */
const TSV = (expr: string) => `to_tsvector('russian', coalesce(${expr}, '')) || to_tsvector('english', coalesce(${expr}, ''))`;

export const MIGRATIONS: ReadonlyArray<{ id: number; name: string; sql: string }> = [
  {
    id: 1,
    name: 'read model: tickets, messages, attachments, deliveries, contacts, ratings, sla breaches',
    sql: `
CREATE TABLE projection_checkpoint (
  name text PRIMARY KEY,
  -- Highest OMNI_LOG stream sequence applied; written in the same transaction as its effects.
  seq bigint NOT NULL,
  updated_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE contacts (
  id text PRIMARY KEY,
  display_name text,
  -- Set when merged: every row of this contact now belongs to that one (always a root, never a chain).
  merged_into text REFERENCES contacts(id),
  created_at timestamptz NOT NULL,
  updated_at timestamptz NOT NULL
);
CREATE INDEX contacts_merged_into ON contacts (merged_into) WHERE merged_into IS NOT NULL;

-- How the platform knows a person. scope is '' for identities valid across accounts (a phone, an
-- email address, a Telegram user id, a WhatsApp LID) and the account for workspace-local ids (Slack).
CREATE TABLE contact_identities (
  contact_id text NOT NULL REFERENCES contacts(id),
  kind text NOT NULL CHECK (kind IN ('phone', 'email', 'telegram_user', 'whatsapp_lid', 'slack_user', 'external')),
  scope text NOT NULL DEFAULT '',
  value text NOT NULL,
  channel text NOT NULL,
  account text,
  -- What proved it: sender (the platform's own id of the sender), contact_card (Telegram: the user
  -- shared their own phone), profile (Slack's verified profile email), api (a person merged it).
  proof text NOT NULL,
  created_at timestamptz NOT NULL,
  PRIMARY KEY (kind, scope, value)
);
CREATE INDEX contact_identities_contact ON contact_identities (contact_id);
CREATE INDEX contact_identities_value ON contact_identities (kind, value);

-- Merges made through the API (POST /v1/contacts/{id}/merge): not in the ticket log, so kept when
-- the projection is rebuilt and applied again to contacts as they are recreated.
CREATE TABLE contact_merges (
  from_id text PRIMARY KEY,
  into_id text NOT NULL,
  at timestamptz NOT NULL,
  by text
);

CREATE TABLE tickets (
  id text PRIMARY KEY,
  number bigint,
  status text NOT NULL CHECK (status IN ('new', 'open', 'pending', 'resolved', 'closed')),
  channel text NOT NULL,
  account text NOT NULL,
  conversation jsonb NOT NULL,
  subject text,
  contact_id text REFERENCES contacts(id),
  -- The customer as the router recorded them (TicketContact: id, displayName, handles).
  contact jsonb NOT NULL,
  created_at timestamptz NOT NULL,
  updated_at timestamptz NOT NULL,
  -- The first agent reply (not automatic acknowledgements or alerts).
  first_response_at timestamptz,
  -- Latest move to resolved / closed; cleared when the ticket reopens.
  resolved_at timestamptz,
  closed_at timestamptz,
  reopened_count int NOT NULL DEFAULT 0,
  last_inbound_at timestamptz,
  last_outbound_at timestamptz,
  -- Latest agent reply (lastOutboundAt counts automatic messages too).
  last_agent_reply_at timestamptz,
  message_count int NOT NULL DEFAULT 0,
  last_delivery jsonb,
  csat_requested_at timestamptz,
  rating smallint,
  rated_at timestamptz,
  first_response_breached_at timestamptz,
  no_answer_breached_for timestamptz,
  -- Highest OMNI_LOG sequence applied to this row.
  last_seq bigint NOT NULL,
  search tsvector GENERATED ALWAYS AS (${TSV('subject')}) STORED
);
-- The list endpoint: newest first with a (updated_at, id) cursor, optionally by status/channel/contact.
CREATE INDEX tickets_updated ON tickets (updated_at DESC, id DESC);
CREATE INDEX tickets_status_updated ON tickets (status, updated_at DESC, id DESC);
CREATE INDEX tickets_channel_updated ON tickets (channel, account, updated_at DESC, id DESC);
CREATE INDEX tickets_contact ON tickets (contact_id, created_at);
CREATE INDEX tickets_created ON tickets (created_at);
CREATE INDEX tickets_number ON tickets (number);
CREATE INDEX tickets_search ON tickets USING gin (search);
-- Due work: only the tickets a timer can still fire for are in these indexes.
CREATE INDEX tickets_due_first_response ON tickets (created_at)
  WHERE first_response_at IS NULL AND first_response_breached_at IS NULL AND status IN ('new', 'open');
CREATE INDEX tickets_due_no_answer ON tickets (last_inbound_at)
  WHERE status IN ('new', 'open') AND last_inbound_at IS NOT NULL;
CREATE INDEX tickets_due_csat ON tickets (resolved_at)
  WHERE csat_requested_at IS NULL AND status IN ('resolved', 'closed');
CREATE INDEX tickets_closed ON tickets (closed_at) WHERE status = 'closed';

CREATE TABLE messages (
  -- OMNI_LOG stream sequence of the entry that added it.
  seq bigint PRIMARY KEY,
  ticket_id text NOT NULL REFERENCES tickets(id) ON DELETE CASCADE,
  -- Inbound event id, outbound message id or note id.
  id text NOT NULL,
  direction text NOT NULL CHECK (direction IN ('inbound', 'outbound', 'note')),
  -- Outbound: agent_reply | acknowledgement | sla_alert | satisfaction_request.
  purpose text,
  channel text NOT NULL,
  account text NOT NULL,
  contact_id text REFERENCES contacts(id),
  author_id text,
  author_name text,
  platform_message_id text,
  at timestamptz NOT NULL,
  text text NOT NULL DEFAULT '',
  edited_at timestamptz,
  deleted_at timestamptz,
  -- Inbound: when an agent first replied after it (reaction time = answered_at - at).
  answered_at timestamptz,
  search tsvector GENERATED ALWAYS AS (${TSV('text')}) STORED,
  UNIQUE (ticket_id, direction, id)
);
CREATE INDEX messages_ticket ON messages (ticket_id, seq);
CREATE INDEX messages_at ON messages (at);
CREATE INDEX messages_contact ON messages (contact_id) WHERE contact_id IS NOT NULL;
CREATE INDEX messages_platform ON messages (ticket_id, platform_message_id) WHERE platform_message_id IS NOT NULL;
CREATE INDEX messages_unanswered ON messages (ticket_id, at) WHERE direction = 'inbound' AND answered_at IS NULL;
CREATE INDEX messages_search ON messages USING gin (search);

CREATE TABLE attachments (
  message_seq bigint NOT NULL REFERENCES messages(seq) ON DELETE CASCADE,
  position int NOT NULL,
  ticket_id text NOT NULL,
  name text NOT NULL,
  mime_type text NOT NULL,
  size bigint NOT NULL,
  sha256 text,
  object_key text,
  ref text,
  kind text,
  status text NOT NULL,
  PRIMARY KEY (message_seq, position)
);
CREATE INDEX attachments_ticket ON attachments (ticket_id);
CREATE INDEX attachments_object ON attachments (object_key) WHERE object_key IS NOT NULL;

-- One row per outbound message: its latest status and when it reached each.
CREATE TABLE deliveries (
  outbound_id text PRIMARY KEY,
  ticket_id text NOT NULL REFERENCES tickets(id) ON DELETE CASCADE,
  channel text NOT NULL,
  account text NOT NULL,
  purpose text,
  status text NOT NULL CHECK (status IN ('sent', 'delivered', 'read', 'failed')),
  reason text,
  platform_message_id text,
  attempts int NOT NULL DEFAULT 1,
  sent_at timestamptz,
  delivered_at timestamptz,
  read_at timestamptz,
  failed_at timestamptz,
  updated_at timestamptz NOT NULL,
  last_seq bigint NOT NULL
);
CREATE INDEX deliveries_ticket ON deliveries (ticket_id);

CREATE TABLE status_changes (
  seq bigint PRIMARY KEY,
  ticket_id text NOT NULL REFERENCES tickets(id) ON DELETE CASCADE,
  from_status text,
  to_status text NOT NULL,
  at timestamptz NOT NULL,
  author_id text,
  reason text
);
CREATE INDEX status_changes_ticket ON status_changes (ticket_id, seq);
CREATE INDEX status_changes_at ON status_changes (at);

CREATE TABLE ratings (
  seq bigint PRIMARY KEY,
  ticket_id text NOT NULL REFERENCES tickets(id) ON DELETE CASCADE,
  contact_id text REFERENCES contacts(id),
  channel text NOT NULL,
  account text NOT NULL,
  rating smallint NOT NULL CHECK (rating BETWEEN 1 AND 5),
  low boolean NOT NULL,
  event_id text NOT NULL,
  at timestamptz NOT NULL,
  UNIQUE (ticket_id, event_id)
);
CREATE INDEX ratings_at ON ratings (at);

CREATE TABLE sla_breaches (
  seq bigint PRIMARY KEY,
  ticket_id text NOT NULL REFERENCES tickets(id) ON DELETE CASCADE,
  breach text NOT NULL CHECK (breach IN ('first_response', 'no_answer')),
  since timestamptz NOT NULL,
  at timestamptz NOT NULL,
  limit_ms bigint NOT NULL,
  escalated_to text,
  UNIQUE (ticket_id, breach, since)
);
CREATE INDEX sla_breaches_at ON sla_breaches (at);
`,
  },
  {
    id: 2,
    name: 'contact identities by value alone',
    // The contact filter of GET /v1/tickets names a value without saying its kind (a phone, an
    // email, a platform id); (kind, value) cannot serve that, and at 500,000 identities the scan
    // took 0.2–0.5 s per request (bench history phase, docs/data.md).
    sql: `CREATE INDEX contact_identities_by_value ON contact_identities (value);`,
  },
  {
    id: 3,
    name: 'the ticket log the checkpoint counts in',
    // OMNI_LOG's creation time: a checkpoint is a sequence of one stream. A NATS store replaced
    // (restored, wiped) or the stream made again starts at 1, and the projection skipped
    // everything up to the old checkpoint without a word (projection.ts, sameLog).
    sql: `ALTER TABLE projection_checkpoint ADD COLUMN log_created text;`,
  },
  {
    id: 4,
    name: 'attachments by object key and by reference',
    // Erasure and retention ask, for each file they would delete, whether a ticket they keep still
    // uses it (erasure.ts fileReferencedElsewhere): without these, a scan of every attachment per file.
    sql: `CREATE INDEX attachments_by_object ON attachments (object_key) WHERE object_key IS NOT NULL;
CREATE INDEX attachments_by_ref ON attachments (ref) WHERE ref IS NOT NULL;`,
  },
  {
    id: 5,
    name: 'the rows the projection holds, kept with its checkpoint',
    // How many tickets and messages the projection has written (less what erasure deleted), moved
    // in the same transaction as the checkpoint: rows deleted behind its back (an operator's
    // TRUNCATE tickets CASCADE, a DELETE, one table restored) leave the tables disagreeing with
    // the checkpoint, which the applier checks and, for rows lost, restores by replaying the log
    // over the rows that are there (lost-rows.ts).
    // counted_seq is the checkpoint the counts are true at: -1 for a row from before (or one moved
    // by an older version, which leaves it behind): its counts are taken afresh, not trusted.
    sql: `ALTER TABLE projection_checkpoint ADD COLUMN tickets bigint NOT NULL DEFAULT 0;
ALTER TABLE projection_checkpoint ADD COLUMN messages bigint NOT NULL DEFAULT 0;
ALTER TABLE projection_checkpoint ADD COLUMN counted_seq bigint NOT NULL DEFAULT 0;
UPDATE projection_checkpoint SET counted_seq = -1;`,
  },
  {
    id: 6,
    name: 'a replay restoring lost rows, kept with the checkpoint',
    // Set with the checkpoint's reset to 0 when rows were found lost, cleared when the replay
    // reaches rebuild_until (the log's last sequence when it began): a process killed mid-replay
    // left only a checkpoint below the log's end, and its successor finished the replay as
    // ordinary lag, with no `rebuilding` status and no closing line (lost-rows.ts).
    // Nullable and unnamed by older versions' writes: a replica from before neither sets nor
    // clears them, and a newer one finishes what it finds set.
    sql: `ALTER TABLE projection_checkpoint ADD COLUMN rebuild_until bigint;
ALTER TABLE projection_checkpoint ADD COLUMN rebuild_started timestamptz;
ALTER TABLE projection_checkpoint ADD COLUMN rebuild_reason text;`,
  },
  {
    id: 7,
    name: 'the reply window and failed replies on ticket rows',
    // The list showed neither (GET /v1/tickets/{id} did): an agent could not see which WhatsApp
    // tickets may still be answered, and a failed reply looked answered (an outside trial).
    // Nullable: rows from before, and rows an older replica writes during a rolling upgrade,
    // simply lack them. failed_replies is NULL when empty, never '[]' (the list's filter reads so).
    // The failures already in SQL are copied in: the projection adds a failure only as its own
    // entry is applied, so a row from before would never have shown one. An agent reply whose
    // deliveries row ends `failed` failed and did not go out since (a replay sent moves it on),
    // with its newest failure's time and reason; the ten newest per ticket, oldest first, as the
    // KV ticket keeps them. The reply window has no copy in SQL: it comes with the next message.
    sql: `ALTER TABLE tickets ADD COLUMN reply_window_ends_at timestamptz;
ALTER TABLE tickets ADD COLUMN failed_replies jsonb;
UPDATE tickets t SET failed_replies = f.list
  FROM (SELECT ticket_id,
               jsonb_agg(jsonb_build_object('outboundId', outbound_id, 'at', to_char(updated_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'), 'reason', coalesce(reason, 'unknown'))
                         ORDER BY updated_at, outbound_id) AS list
          FROM (SELECT d.*, row_number() OVER (PARTITION BY ticket_id ORDER BY updated_at DESC, outbound_id DESC) AS newest
                  FROM deliveries d WHERE purpose = 'agent_reply' AND status = 'failed') failed
         WHERE newest <= 10 GROUP BY ticket_id) f
 WHERE t.id = f.ticket_id;`,
  },
  {
    id: 8,
    name: 'ratings by contact',
    // Retention now erases a person with their last ticket (read-model/erasure.ts): whether a
    // rating of theirs is left, and the foreign-key check of each contact deleted, read ratings
    // by contact_id, a scan of the whole table per contact without it, under the checkpoint's lock.
    sql: `CREATE INDEX ratings_by_contact ON ratings (contact_id);`,
  },
  {
    id: 9,
    name: 'message subjects',
    // A thread's later mails may change the subject ("Re: счёт 4512" → "Акт сверки за ноябрь"):
    // only the first one was searchable, as the ticket's. A plain column and a partial index, so
    // the migration rewrites no table (a stored generated column would rewrite every message);
    // messages logged before it have no subject of their own (a rebuild from the log fills it).
    sql: `ALTER TABLE messages ADD COLUMN subject text;
CREATE INDEX messages_subject_search ON messages USING gin ((${TSV('subject')})) WHERE subject IS NOT NULL;`,
  },
];

/**
 * Applies what is missing; `newer` lists migrations recorded in the database that this version
 * does not know: a newer omnigate ran on it and this one is a downgrade (an outside trial found
 * it ran silently). Columns those added are left as they are and not kept up to date here.
 */
export async function migrate(db: Database): Promise<{ applied: number[]; newer: Array<{ id: number; name: string }> }> {
  const applied: number[] = [];
  await db.query(`CREATE TABLE IF NOT EXISTS schema_migrations (id int PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())`).catch(async (err: unknown) => {
    // Two replicas creating it at once: one loses with a unique violation on the catalog; it exists now.
    if (!(await exists(db))) throw err;
  });
  for (const m of MIGRATIONS) {
    const done = await db.transaction(async (tx) => {
      if (db.engine === 'postgres') await tx.query('SELECT pg_advisory_xact_lock($1)', [MIGRATION_LOCK_KEY]);
      if ((await tx.query('SELECT 1 FROM schema_migrations WHERE id = $1', [m.id])).length) return false;
      await runScript(tx, m.sql);
      await tx.query('INSERT INTO schema_migrations (id, name) VALUES ($1, $2)', [m.id, m.name]);
      return true;
    });
    if (done) applied.push(m.id);
  }
  const known = MIGRATIONS[MIGRATIONS.length - 1]!.id;
  const newer = await db.query<{ id: number; name: string }>('SELECT id, name FROM schema_migrations WHERE id > $1 ORDER BY id', [known]);
  return { applied, newer: newer.map((r) => ({ id: Number(r.id), name: r.name })) };
}

async function exists(db: Queryable): Promise<boolean> {
  return (await db.query(`SELECT 1 FROM pg_tables WHERE tablename = 'schema_migrations'`)).length > 0;
}

/** Statement by statement: the extended protocol (parameters) takes one statement per query. */
async function runScript(tx: Queryable, sql: string): Promise<void> {
  const statements = sql
    .split(/;\s*\n/)
    .map((s) => s.replace(/^\s*--.*$/gm, '').trim())
    .filter(Boolean);
  for (const s of statements) await tx.query(s);
}
