/**
 * What one batch's transaction knows and has not yet written. The projection applies up to 500
 * entries per transaction; applying each alone cost 6–9 sequential round trips per inbound
 * message (contact lookup, identity inserts, contact update, ticket check, message insert, ticket
 * update) and ran at 72–340 entries/s. Here a batch instead:
 *
 * - looks up, in two statements before it starts, which of its tickets have a row and which of
 *   its senders' identities are known (`prefetch`): a known sender costs no statement at all;
 * - keeps inbound messages and their effect on the ticket row (count, updated_at, last_seq,
 *   last_inbound_at, reply_window_ends_at, pending → open) and writes them per ticket in one
 *   multi-row insert and one update.
 *
 * Order is kept where it matters: any other entry of a ticket (a reply, a status change, a
 * delivery, an edit) first writes that ticket's pending messages (`flushTicket`), so every
 * statement sees the rows exactly as applying one entry at a time would have left them. The
 * batch's end writes the rest (`flush`) before the checkpoint moves, in the same transaction.
 * Within that transaction the applier is the only writer of ticket and contact rows except an
 * erasure or a merge through the API; a merge the projection itself makes drops what was cached.
 *
 * A replay of the log over rows that are still there (lost-rows.ts: rows were lost
 * behind the projection) must neither apply an entry's effect on a ticket row twice nor skip it
 * where the row was made anew. `tickets.last_seq` is the highest sequence whose effect is in the
 * row (every entry that changes a ticket row sets it), so the batch remembers it per ticket as it
 * found it (`floor`): an entry at or below it is in the row already (`inTicketRow`), and only its
 * missing child rows (a message, a status change…) are written again. Applied forward, every
 * entry is above its ticket's floor and nothing changes.
 */
import type { Attachment } from '../core/schema.js';
import { contactIdFor } from './contacts.js';
import type { Queryable } from './database.js';

export interface PendingInbound {
  seq: number;
  ticketId: string;
  id: string;
  channel: string;
  account: string;
  contactId: string;
  authorId: string;
  authorName: string | null;
  platformMessageId: string | null;
  at: string;
  text: string;
  /** A mail's (or a web form's) own subject; later mails of a thread may change it. */
  subject: string | null;
  attachments: Attachment[];
  /** receivedAt when the customer waits on it (not a bare reaction); null otherwise. */
  waitsSince: string | null;
  /** Until when the channel allows a free-form reply after it (WhatsApp: 24 hours); null where no limit applies. */
  replyWindowEndsAt: string | null;
}

export interface KnownIdentity {
  root: string;
  hasName: boolean;
}

export interface IdentityKey {
  kind: string;
  scope: string;
  value: string;
}

/** Rows of `tickets` and `messages` written. */
export interface RowsAdded {
  tickets: number;
  messages: number;
}

/**
 * What a batch did besides its outcomes: the rows it wrote, and how many of its entries named a
 * ticket SQL does not have (what rows deleted behind the projection look like; an edit or delete
 * of a message SQL never stored is not one: routine for Telegram edits).
 */
export interface BatchTally extends RowsAdded {
  missingTickets: number;
}

const identityKey = (i: IdentityKey) => `${i.kind}\n${i.scope}\n${i.value}`;

export class BatchMemory {
  /**
   * Tickets whose row exists, with the last_seq it had when this batch first looked (0 for a row
   * this batch made), or null when there is none, as far as this transaction knows.
   */
  private readonly tickets = new Map<string, number | null>();
  private readonly identities = new Map<string, KnownIdentity>();
  /** Identities the prefetch looked for and SQL did not have (none of this batch's entries added them since). */
  private readonly absent = new Set<string>();
  /** For a new sender's would-be contact id: the contact a person had merged it into (null: none). */
  private readonly merges = new Map<string, string | null>();
  /** Newest `at` of a named message from each contact resolved from memory: its updated_at, written at the end. */
  private readonly contactSeen = new Map<string, string>();
  private readonly inbound = new Map<string, PendingInbound[]>();
  private readonly pendingIds = new Set<string>();
  /** Deferred messages that turned out to be in SQL already (a republished event). */
  private duplicates = 0;
  /** Ticket and message rows this batch wrote (kept with the checkpoint: lost-rows.ts), and entries whose ticket SQL lacked. */
  readonly added: BatchTally = { tickets: 0, messages: 0, missingTickets: 0 };

  /**
   * @param verifyLoss An entry that would make a ticket row from the middle of its log (not the
   * message that opened the ticket) throws MissingTicketRowError instead: the row may have been
   * lost behind the projection, and a row made now would hide the entries before it from the
   * replay that restores it (projection.ts asks the row counts first).
   */
  constructor(
    private readonly tx: Queryable,
    readonly verifyLoss = false,
  ) {}

  /**
   * Three lookups for the whole batch: which tickets exist, which of its senders' identities are
   * known and whose they are, and for senders SQL has never seen, whether a person had merged the
   * contact they would get (a rebuild replays API merges).
   */
  async prefetch(ticketIds: string[], senders: IdentityKey[][]): Promise<void> {
    const unknownTickets = [...new Set(ticketIds)].filter((id) => !this.tickets.has(id));
    if (unknownTickets.length) {
      const found = new Map(
        (await this.tx.query<{ id: string; last_seq: string | number }>('SELECT id, last_seq FROM tickets WHERE id = ANY($1::text[])', [unknownTickets])).map((r) => [r.id, Number(r.last_seq)]),
      );
      for (const id of unknownTickets) this.tickets.set(id, found.get(id) ?? null);
    }
    const unique = [...new Map(senders.flat().map((i) => [identityKey(i), i])).values()].filter((i) => !this.identities.has(identityKey(i)) && !this.absent.has(identityKey(i)));
    if (!unique.length) return;
    const rows = await this.tx.query<{ kind: string; scope: string; value: string; root: string; has_name: boolean }>(
      `SELECT i.kind, i.scope, i.value, r.id AS root, r.display_name IS NOT NULL AS has_name
         FROM contact_identities i JOIN contacts c ON c.id = i.contact_id JOIN contacts r ON r.id = coalesce(c.merged_into, c.id)
        WHERE (i.kind, i.scope, i.value) IN (SELECT * FROM unnest($1::text[], $2::text[], $3::text[]))`,
      [unique.map((i) => i.kind), unique.map((i) => i.scope), unique.map((i) => i.value)],
    );
    for (const r of rows) this.identities.set(identityKey(r), { root: r.root, hasName: r.has_name });
    for (const i of unique) if (!this.identities.has(identityKey(i))) this.absent.add(identityKey(i));
    const newcomers = [...new Set(senders.filter((ids) => ids.length && this.unknownSender(ids)).map((ids) => contactIdFor(ids[0]!)))].filter((id) => !this.merges.has(id));
    if (!newcomers.length) return;
    const merged = new Map((await this.tx.query<{ from_id: string; into_id: string }>('SELECT from_id, into_id FROM contact_merges WHERE from_id = ANY($1::text[])', [newcomers])).map((r) => [r.from_id, r.into_id]));
    for (const id of newcomers) this.merges.set(id, merged.get(id) ?? null);
  }

  /** Every identity of this sender is one SQL did not have when the batch began, and none was added since. */
  unknownSender(ids: IdentityKey[]): boolean {
    return ids.every((i) => this.absent.has(identityKey(i)));
  }

  /** The prefetched merge target of a new contact id: a contact id, null for none, undefined when not looked up. */
  mergedInto(contactId: string): string | null | undefined {
    return this.merges.get(contactId);
  }

  async ticketExists(id: string): Promise<boolean> {
    return (await this.floor(id)) !== null;
  }

  /** The ticket row's last_seq when this batch first looked (0: made by this batch), null when there is none. */
  private async floor(id: string): Promise<number | null> {
    const known = this.tickets.get(id);
    if (known !== undefined) return known;
    const [row] = await this.tx.query<{ last_seq: string | number }>('SELECT last_seq FROM tickets WHERE id = $1', [id]);
    const found = row ? Number(row.last_seq) : null;
    this.tickets.set(id, found);
    return found;
  }

  /**
   * Whether entry `seq`'s effect on the ticket row is there already: a replay of the log over a
   * row that survived (the counters, the status, last_seq stay as they are). False for a row made
   * anew, and always when the log is applied forward.
   */
  async inTicketRow(id: string, seq: number): Promise<boolean> {
    const floor = await this.floor(id);
    return floor !== null && seq <= floor;
  }

  ticketCreated(id: string): void {
    this.tickets.set(id, 0);
    this.added.tickets++;
  }

  /**
   * The root contact of a sender whose every identity is known and leads to one contact that
   * already has a name if this message brings one; undefined when SQL must be asked.
   */
  knownSender(ids: IdentityKey[], displayName: string | undefined, at: string): string | undefined {
    let root: string | undefined;
    for (const i of ids) {
      const known = this.identities.get(identityKey(i));
      if (!known || (root !== undefined && known.root !== root) || (displayName && !known.hasName)) return undefined;
      root = known.root;
    }
    // As resolveContact: a message that brings a name moves the contact's updated_at.
    if (root !== undefined && displayName && (this.contactSeen.get(root) ?? '') < at) this.contactSeen.set(root, at);
    return root;
  }

  /** What resolving a sender in SQL established: its identities now lead to `root`. */
  learnSender(ids: IdentityKey[], root: string, named: boolean): void {
    for (const i of ids) {
      this.identities.set(identityKey(i), { root, hasName: named });
      this.absent.delete(identityKey(i));
    }
  }

  /** A merge changed which contact is a root: what was cached may name a merged one. */
  forgetSenders(): void {
    this.identities.clear();
    this.absent.clear();
  }

  /**
   * An inbound message, written with its ticket's others. False: the same event is already
   * pending in this batch (a republished event logged twice), nothing to add.
   */
  addInbound(m: PendingInbound): boolean {
    const key = `${m.ticketId}\n${m.id}`;
    if (this.pendingIds.has(key)) return false;
    this.pendingIds.add(key);
    const list = this.inbound.get(m.ticketId);
    if (list) list.push(m);
    else this.inbound.set(m.ticketId, [m]);
    return true;
  }

  /** Writes `ticketId`'s pending inbound messages, before another kind of entry reads or changes its rows. */
  async flushTicket(ticketId: string): Promise<void> {
    const list = this.inbound.get(ticketId);
    if (!list) return;
    this.inbound.delete(ticketId);
    await this.writeInbound(list);
  }

  /**
   * Everything still pending; called once, before the checkpoint moves. Returns how many deferred
   * messages were duplicates (the caller counted them as applied).
   */
  async flush(): Promise<number> {
    const all = [...this.inbound.values()].flat();
    this.inbound.clear();
    if (all.length) await this.writeInbound(all);
    if (this.contactSeen.size) {
      const seen = [...this.contactSeen];
      this.contactSeen.clear();
      await this.tx.query(
        `UPDATE contacts c SET updated_at = greatest(c.updated_at, v.at)
           FROM unnest($1::text[], $2::timestamptz[]) AS v(id, at) WHERE c.id = v.id`,
        [seen.map(([id]) => id), seen.map(([, at]) => at)],
      );
    }
    const duplicates = this.duplicates;
    this.duplicates = 0;
    return duplicates;
  }

  private async writeInbound(list: PendingInbound[]): Promise<void> {
    for (const m of list) this.pendingIds.delete(`${m.ticketId}\n${m.id}`);
    const col = <K extends keyof PendingInbound>(k: K) => list.map((m) => m[k]);
    const inserted = new Set(
      (
        await this.tx.query<{ seq: string | number }>(
          `INSERT INTO messages (seq, ticket_id, id, direction, channel, account, contact_id, author_id, author_name, platform_message_id, at, text, subject)
           SELECT seq, ticket_id, id, 'inbound', channel, account, contact_id, author_id, author_name, platform_message_id, at, text, subject
             FROM unnest($1::bigint[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[], $9::text[], $10::timestamptz[], $11::text[], $12::text[])
               AS v(seq, ticket_id, id, channel, account, contact_id, author_id, author_name, platform_message_id, at, text, subject)
           ON CONFLICT (ticket_id, direction, id) DO NOTHING RETURNING seq`,
          [col('seq'), col('ticketId'), col('id'), col('channel'), col('account'), col('contactId'), col('authorId'), col('authorName'), col('platformMessageId'), col('at'), col('text'), col('subject')],
        )
      ).map((r) => Number(r.seq)),
    );
    const written = list.filter((m) => inserted.has(m.seq));
    // Not written: the same event logged twice (another sequence: a duplicate, as before), or this
    // very entry's row, still there under a replay (lost-rows.ts). The latter still
    // counts on a ticket row that does not hold it yet (a ticket row lost while its messages stayed).
    const kept = written.length < list.length
      ? new Set((await this.tx.query<{ seq: string | number }>('SELECT seq FROM messages WHERE seq = ANY($1::bigint[])', [list.filter((m) => !inserted.has(m.seq)).map((m) => m.seq)])).map((r) => Number(r.seq)))
      : new Set<number>();
    this.duplicates += list.length - written.length;
    this.added.messages += written.length;
    await this.writeAttachments(written);
    const counted: PendingInbound[] = [];
    for (const m of list) if ((inserted.has(m.seq) || kept.has(m.seq)) && !(await this.inTicketRow(m.ticketId, m.seq))) counted.push(m);
    await this.writeTicketSums(counted);
  }

  private async writeAttachments(messages: PendingInbound[]): Promise<void> {
    const rows = messages.flatMap((m) => m.attachments.map((a, position) => ({ m, a, position })));
    if (!rows.length) return;
    await this.tx.query(
      `INSERT INTO attachments (message_seq, position, ticket_id, name, mime_type, size, sha256, object_key, ref, kind, status)
       SELECT * FROM unnest($1::bigint[], $2::int[], $3::text[], $4::text[], $5::text[], $6::bigint[], $7::text[], $8::text[], $9::text[], $10::text[], $11::text[])`,
      [rows.map((r) => r.m.seq), rows.map((r) => r.position), rows.map((r) => r.m.ticketId), rows.map((r) => r.a.name), rows.map((r) => r.a.mimeType), rows.map((r) => r.a.size),
        rows.map((r) => r.a.sha256 ?? null), rows.map((r) => r.a.objectKey ?? null), rows.map((r) => r.a.ref ?? null), rows.map((r) => r.a.kind), rows.map((r) => r.a.status)],
    );
  }

  /**
   * As inbound messages one by one did: each counts and moves updated_at and last_seq; one the
   * customer waits on sets last_inbound_at and opens a pending ticket (no status entry is logged
   * for that). The messages are in log order, so the last one wins as it would have. The reply
   * window is the latest any message gave, as on the ticket record (ticket-changes.ts
   * recordInbound): a message logged late does not shorten it.
   */
  private async writeTicketSums(messages: PendingInbound[]): Promise<void> {
    const sums = new Map<string, { n: number; at: string; seq: number; waits: string | null; window: string | null }>();
    const later = (a: string | null, b: string | null) => (a === null || (b !== null && Date.parse(b) > Date.parse(a)) ? b : a);
    for (const m of messages) {
      const s = sums.get(m.ticketId);
      if (!s) sums.set(m.ticketId, { n: 1, at: m.at, seq: m.seq, waits: m.waitsSince, window: m.replyWindowEndsAt });
      else Object.assign(s, { n: s.n + 1, at: m.at, seq: m.seq, waits: m.waitsSince ?? s.waits, window: later(s.window, m.replyWindowEndsAt) });
    }
    if (!sums.size) return;
    const list = [...sums];
    await this.tx.query(
      `UPDATE tickets t SET message_count = t.message_count + v.n, updated_at = v.updated_at, last_seq = v.last_seq,
              last_inbound_at = coalesce(v.last_inbound_at, t.last_inbound_at),
              reply_window_ends_at = greatest(t.reply_window_ends_at, v.reply_window_ends_at),
              status = CASE WHEN v.last_inbound_at IS NOT NULL AND t.status = 'pending' THEN 'open' ELSE t.status END
         FROM unnest($1::text[], $2::int[], $3::timestamptz[], $4::bigint[], $5::timestamptz[], $6::timestamptz[]) AS v(id, n, updated_at, last_seq, last_inbound_at, reply_window_ends_at)
        WHERE t.id = v.id`,
      [list.map(([id]) => id), list.map(([, s]) => s.n), list.map(([, s]) => s.at), list.map(([, s]) => s.seq), list.map(([, s]) => s.waits), list.map(([, s]) => s.window)],
    );
  }
}
