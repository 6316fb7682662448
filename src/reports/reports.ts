/**
 * Support reports from the SQL read model: first response, reaction, idle, repeat contacts,
 * satisfaction and volume, over [from, to), grouped by day, week, channel or account.
 *
 * Durations are business time when a calendar is given (router.sla.businessHours: the clock the
 * SLA runs on), computed per row with the SLA's own calendar code, then aggregated in SQL with
 * percentile_cont (median, p90) beside the average: one ticket left waiting over a weekend must
 * not hide behind a good average, nor a good median hide a bad tail.
 */
import type { Queryable } from '../read-model/database.js';
import { UNDELIVERED_REASON_PREFIX } from '../core/schema.js';
import { businessMs, type BusinessHours } from '../router/business-hours.js';

export const REPORT_KINDS = ['first-response', 'reaction', 'idle', 'repeat-contacts', 'satisfaction', 'volume'] as const;
export type ReportKind = (typeof REPORT_KINDS)[number];
export const GROUP_BY = ['day', 'week', 'channel', 'account'] as const;
export type GroupBy = (typeof GROUP_BY)[number];

export interface ReportQuery {
  from: Date;
  to: Date;
  groupBy?: GroupBy;
  /** null: wall-clock durations. */
  businessHours: BusinessHours | null;
  /** Days and weeks are cut in this zone. */
  timezone: string;
  /** repeat-contacts: a new ticket within this long after a resolution counts as a repeat. */
  repeatWindowMs: number;
  /** idle: waiting is measured up to min(to, now). */
  now: Date;
}

export type ReportRow = { group: string } & Record<string, number | string | null>;

const DURATION_COLUMNS = ['avgSeconds', 'medianSeconds', 'p90Seconds', 'maxSeconds'] as const;
/**
 * Every report's columns, in order: the CSV header comes from here, so a report with no rows still
 * names them all (it said only `group` before). A test checks the rows carry exactly these.
 */
export const REPORT_COLUMNS: Record<ReportKind, readonly string[]> = {
  'first-response': ['group', 'tickets', 'answered', 'unanswered', ...DURATION_COLUMNS],
  reaction: ['group', 'messages', 'answered', 'unanswered', ...DURATION_COLUMNS],
  idle: ['group', 'waiting', ...DURATION_COLUMNS],
  'repeat-contacts': ['group', 'contacts', 'repeated', 'rate', 'windowDays'],
  satisfaction: ['group', 'requested', 'ratings', 'responseRate', 'satisfied', 'csat', 'average', 'median', 'r1', 'r2', 'r3', 'r4', 'r5'],
  volume: ['group', 'created', 'inbound', 'replies', 'resolved', 'resolvedUndelivered'],
};

export interface Report {
  report: ReportKind;
  from: string;
  to: string;
  groupBy: GroupBy | null;
  businessHours: boolean;
  timezone: string;
  /** Unit of every duration column (…Seconds). */
  unit: 'seconds';
  rows: ReportRow[];
}

const ALL = 'all';

export async function runReport(db: Queryable, kind: ReportKind, q: ReportQuery): Promise<Report> {
  const rows = await REPORTS[kind](db, q);
  return {
    report: kind,
    from: q.from.toISOString(),
    to: q.to.toISOString(),
    groupBy: q.groupBy ?? null,
    businessHours: q.businessHours !== null,
    timezone: q.timezone,
    unit: 'seconds',
    rows: rows.sort((a, b) => (a.group < b.group ? -1 : a.group > b.group ? 1 : 0)),
  };
}

type Builder = (db: Queryable, q: ReportQuery) => Promise<ReportRow[]>;

interface Timed {
  channel: string;
  account: string;
  start: string;
  end: string | null;
}

/** A duration per row (null: no end yet), grouped, with counts and SQL percentiles. */
async function durations(db: Queryable, q: ReportQuery, rows: Timed[], label: { total: string; done: string; open: string }): Promise<ReportRow[]> {
  const groups = new Map<string, { total: number; done: number }>();
  const keys: string[] = [];
  const seconds: number[] = [];
  for (const r of rows) {
    const g = groupOf(q, r.channel, r.account, r.start);
    const c = groups.get(g) ?? { total: 0, done: 0 };
    groups.set(g, c);
    c.total++;
    if (r.end === null) continue;
    c.done++;
    keys.push(g);
    seconds.push(businessMs(Date.parse(r.start), Date.parse(r.end), q.businessHours) / 1000);
  }
  const stats = await aggregate(db, keys, seconds);
  return [...groups].map(([group, c]) => ({
    group,
    [label.total]: c.total,
    [label.done]: c.done,
    [label.open]: c.total - c.done,
    ...(stats.get(group) ?? EMPTY_STATS),
  }));
}

const EMPTY_STATS = { avgSeconds: null, medianSeconds: null, p90Seconds: null, maxSeconds: null };

/** Average, median and p90 per group, by PostgreSQL (percentile_cont: interpolated, as spreadsheets do). */
async function aggregate(db: Queryable, keys: string[], values: number[]): Promise<Map<string, typeof EMPTY_STATS | Record<string, number>>> {
  if (keys.length === 0) return new Map();
  const rows = await db.query<{ g: string; avg: number; median: number; p90: number; max: number }>(
    `SELECT g, avg(v)::float8 AS avg,
            percentile_cont(0.5) WITHIN GROUP (ORDER BY v) AS median,
            percentile_cont(0.9) WITHIN GROUP (ORDER BY v) AS p90,
            max(v) AS max
       FROM unnest($1::text[], $2::float8[]) AS x(g, v) GROUP BY g`,
    [keys, values],
  );
  return new Map(rows.map((r) => [r.g, { avgSeconds: round(r.avg), medianSeconds: round(r.median), p90Seconds: round(r.p90), maxSeconds: round(r.max) }]));
}

function round(n: number): number {
  return Math.round(Number(n) * 1000) / 1000;
}

const firstResponse: Builder = async (db, q) => {
  const rows = await db.query<Timed>(
    `SELECT channel, account, created_at AS start, first_response_at AS "end" FROM tickets WHERE created_at >= $1 AND created_at < $2`,
    [q.from.toISOString(), q.to.toISOString()],
  );
  return durations(db, q, rows, { total: 'tickets', done: 'answered', open: 'unanswered' });
};

/** Every customer message until the agent's next reply that reached the channel. */
const reaction: Builder = async (db, q) => {
  const rows = await db.query<Timed>(
    `SELECT channel, account, at AS start, answered_at AS "end" FROM messages
      WHERE direction = 'inbound' AND deleted_at IS NULL AND at >= $1 AND at < $2`,
    [q.from.toISOString(), q.to.toISOString()],
  );
  return durations(db, q, rows, { total: 'messages', done: 'answered', open: 'unanswered' });
};

/**
 * Tickets left waiting at the end of the range: the customer wrote in [from, to), no agent reply
 * reached them by `to` (or now), and the ticket was not resolved or closed then. Idle time runs
 * from the oldest unanswered message.
 */
const idle: Builder = async (db, q) => {
  const until = new Date(Math.min(q.to.getTime(), q.now.getTime())).toISOString();
  const rows = await db.query<Timed>(
    `SELECT t.channel, t.account, min(m.at) AS start, $2::timestamptz AS "end"
       FROM messages m JOIN tickets t ON t.id = m.ticket_id
      WHERE m.direction = 'inbound' AND m.deleted_at IS NULL AND m.at >= $1 AND m.at < $2::timestamptz
        AND (m.answered_at IS NULL OR m.answered_at >= $2::timestamptz)
        AND coalesce((SELECT s.to_status FROM status_changes s WHERE s.ticket_id = t.id AND s.at <= $2::timestamptz ORDER BY s.seq DESC LIMIT 1), 'new') NOT IN ('resolved', 'closed')
      GROUP BY t.id, t.channel, t.account`,
    [q.from.toISOString(), until],
  );
  return (await durations(db, q, rows, { total: 'waiting', done: 'measured', open: 'unmeasured' })).map(({ measured: _m, unmeasured: _u, ...r }) => r as ReportRow);
};

/**
 * Of the contacts whose ticket was resolved (or closed) in [from, to), the share who opened a new
 * ticket within the window after that resolution. Contacts are counted once per group, merged
 * contacts as one.
 */
const repeatContacts: Builder = async (db, q) => {
  const rows = await db.query<{ channel: string; account: string; at: string; contact: string; repeated: boolean }>(
    `SELECT t.channel, t.account, s.at, coalesce(c.merged_into, t.contact_id) AS contact,
            EXISTS (SELECT 1 FROM tickets t2 LEFT JOIN contacts c2 ON c2.id = t2.contact_id
                     WHERE coalesce(c2.merged_into, t2.contact_id) = coalesce(c.merged_into, t.contact_id)
                       AND t2.id <> t.id AND t2.created_at > s.at
                       AND t2.created_at <= s.at + ($3::float8 * interval '1 millisecond')) AS repeated
       FROM status_changes s JOIN tickets t ON t.id = s.ticket_id LEFT JOIN contacts c ON c.id = t.contact_id
      WHERE s.to_status IN ('resolved', 'closed') AND s.at >= $1 AND s.at < $2 AND t.contact_id IS NOT NULL`,
    [q.from.toISOString(), q.to.toISOString(), q.repeatWindowMs],
  );
  const groups = new Map<string, { contacts: Set<string>; repeated: Set<string> }>();
  for (const r of rows) {
    const g = groupOf(q, r.channel, r.account, r.at);
    const c = groups.get(g) ?? { contacts: new Set(), repeated: new Set() };
    groups.set(g, c);
    c.contacts.add(r.contact);
    if (r.repeated) c.repeated.add(r.contact);
  }
  return [...groups].map(([group, c]) => ({
    group,
    contacts: c.contacts.size,
    repeated: c.repeated.size,
    rate: share(c.repeated.size, c.contacts.size),
    windowDays: round(q.repeatWindowMs / 86_400_000),
  }));
};

const satisfaction: Builder = async (db, q) => {
  const range = [q.from.toISOString(), q.to.toISOString()];
  const ratings = await db.query<{ channel: string; account: string; at: string; rating: number }>(
    `SELECT channel, account, at, rating FROM ratings WHERE at >= $1 AND at < $2`, range);
  const requests = await db.query<{ channel: string; account: string; at: string }>(
    `SELECT channel, account, csat_requested_at AS at FROM tickets WHERE csat_requested_at >= $1 AND csat_requested_at < $2`, range);
  const groups = new Map<string, { requested: number; counts: number[] }>();
  const get = (g: string) => {
    const c = groups.get(g) ?? { requested: 0, counts: [0, 0, 0, 0, 0] };
    groups.set(g, c);
    return c;
  };
  for (const r of requests) get(groupOf(q, r.channel, r.account, r.at)).requested++;
  const keys: string[] = [];
  const values: number[] = [];
  for (const r of ratings) {
    const g = groupOf(q, r.channel, r.account, r.at);
    get(g).counts[Number(r.rating) - 1]!++;
    keys.push(g);
    values.push(Number(r.rating));
  }
  const stats = await aggregate(db, keys, values);
  return [...groups].map(([group, c]) => {
    const rated = c.counts.reduce((a, b) => a + b, 0);
    const s = stats.get(group) as Record<string, number> | undefined;
    return {
      group,
      requested: c.requested,
      ratings: rated,
      /** Ratings per request in the same range (a rating may answer a request from before it). */
      responseRate: share(rated, c.requested),
      satisfied: c.counts[3]! + c.counts[4]!,
      /** Share of ratings that were 4 or 5. */
      csat: share(c.counts[3]! + c.counts[4]!, rated),
      average: s ? s.avgSeconds! : null,
      median: s ? s.medianSeconds! : null,
      r1: c.counts[0]!, r2: c.counts[1]!, r3: c.counts[2]!, r4: c.counts[3]!, r5: c.counts[4]!,
    };
  });
};

const volume: Builder = async (db, q) => {
  const range = [q.from.toISOString(), q.to.toISOString()];
  const series: Array<[string, string]> = [
    ['created', `SELECT channel, account, created_at AS at FROM tickets WHERE created_at >= $1 AND created_at < $2`],
    ['inbound', `SELECT channel, account, at FROM messages WHERE direction = 'inbound' AND at >= $1 AND at < $2`],
    ['replies', `SELECT channel, account, at FROM messages WHERE direction = 'outbound' AND coalesce(purpose, 'agent_reply') = 'agent_reply' AND at >= $1 AND at < $2`],
    ['resolved', `SELECT t.channel, t.account, s.at FROM status_changes s JOIN tickets t ON t.id = s.ticket_id WHERE s.to_status = 'resolved' AND s.at >= $1 AND s.at < $2`],
    // Of those, the ones resolved while a reply had not reached the customer: only the router
    // writes a status reason, and this prefix only on such a change (router/commands.ts).
    ['resolvedUndelivered', `SELECT t.channel, t.account, s.at FROM status_changes s JOIN tickets t ON t.id = s.ticket_id WHERE s.to_status = 'resolved' AND left(s.reason, length($3::text)) = $3::text AND s.at >= $1 AND s.at < $2`],
  ];
  const groups = new Map<string, Record<string, number>>();
  for (const [name, sql] of series) {
    const params = name === 'resolvedUndelivered' ? [...range, UNDELIVERED_REASON_PREFIX] : range;
    for (const r of await db.query<{ channel: string; account: string; at: string }>(sql, params)) {
      const g = groupOf(q, r.channel, r.account, r.at);
      const c = groups.get(g) ?? { created: 0, inbound: 0, replies: 0, resolved: 0, resolvedUndelivered: 0 };
      groups.set(g, c);
      c[name]!++;
    }
  }
  return [...groups].map(([group, c]) => ({ group, ...c }));
};

const REPORTS: Record<ReportKind, Builder> = {
  'first-response': firstResponse,
  reaction,
  idle,
  'repeat-contacts': repeatContacts,
  satisfaction,
  volume,
};

function share(part: number, whole: number): number | null {
  return whole === 0 ? null : Math.round((part / whole) * 10_000) / 10_000;
}

function groupOf(q: ReportQuery, channel: string, account: string, at: string): string {
  switch (q.groupBy) {
    case 'channel':
      return channel;
    case 'account':
      return `${channel}/${account}`;
    case 'day':
      return localDate(Date.parse(at), q.timezone);
    case 'week':
      return weekStart(Date.parse(at), q.timezone);
    default:
      return ALL;
  }
}

const dateFormatters = new Map<string, Intl.DateTimeFormat>();
/** "YYYY-MM-DD" of an instant in a zone. */
export function localDate(instant: number, timezone: string): string {
  let f = dateFormatters.get(timezone);
  if (!f) {
    f = new Intl.DateTimeFormat('en-CA', { timeZone: timezone, year: 'numeric', month: '2-digit', day: '2-digit' });
    dateFormatters.set(timezone, f);
  }
  return f.format(new Date(instant));
}

/** The Monday (ISO week start) of the local date of an instant, "YYYY-MM-DD". */
export function weekStart(instant: number, timezone: string): string {
  const day = Date.parse(`${localDate(instant, timezone)}T00:00:00Z`);
  const isoWeekday = ((new Date(day).getUTCDay() + 6) % 7) + 1;
  return new Date(day - (isoWeekday - 1) * 86_400_000).toISOString().slice(0, 10);
}

/** CSV (RFC 4180): a header with the report's columns (also when there are no rows), then one line per row. */
export function toCsv(report: Report): string {
  const columns = [...REPORT_COLUMNS[report.report]];
  for (const row of report.rows) for (const k of Object.keys(row)) if (!columns.includes(k)) columns.push(k);
  const cell = (v: unknown) => {
    const s = v === null || v === undefined ? '' : String(v);
    return /[",\r\n]/.test(s) ? `"${s.replaceAll('"', '""')}"` : s;
  };
  return [columns.join(','), ...report.rows.map((r) => columns.map((c) => cell(r[c])).join(','))].join('\r\n') + '\r\n';
}
