/**
 * The reports fixture: six tickets, twelve messages, four status changes and four ratings, written
 * straight into the read model's tables, with Moscow business hours. The expected answers are
 * computed by hand in test/reports/reports.test.ts.
 */
import type { ReportQuery } from '../../src/reports/reports.js';
import type { BusinessHours } from '../../src/router/business-hours.js';
import type { Queryable } from '../../src/read-model/database.js';

export const HOURS: BusinessHours = { timezone: 'Europe/Moscow', days: [1, 2, 3, 4, 5], intervals: [{ from: 540, to: 1080 }], holidays: [] };
/** Moscow wall time → ISO instant. */
export const msk = (local: string) => new Date(`${local}+03:00`).toISOString();

export const BASE: ReportQuery = {
  from: new Date(msk('2026-03-02T00:00:00')),
  to: new Date(msk('2026-03-16T00:00:00')),
  businessHours: HOURS,
  timezone: 'Europe/Moscow',
  repeatWindowMs: 7 * 86_400_000,
  now: new Date('2026-04-01T00:00:00Z'),
};

export async function loadFixture(db: Queryable): Promise<void> {
  const contacts: Array<[string, string | null]> = [['c-anna', null], ['c-anna-wa', 'c-anna'], ['c-boris', null], ['c-gleb', null], ['c-vera', null]];
  for (const [id, into] of contacts) {
    await db.query(`INSERT INTO contacts (id, display_name, merged_into, created_at, updated_at) VALUES ($1, $1, NULL, now(), now())`, [id]);
    if (into) await db.query(`UPDATE contacts SET merged_into = $2 WHERE id = $1`, [id, into]);
  }
  // id, channel, account, contact, created (MSK), first response (MSK), csat requested (MSK)
  const tickets: Array<[string, string, string, string, string, string | null, string | null]> = [
    ['T1', 'telegram', 'bot', 'c-anna', '2026-03-02T10:00:00', '2026-03-02T10:05:00', '2026-03-02T12:30:00'],
    ['T2', 'email', 'support', 'c-boris', '2026-03-02T17:50:00', '2026-03-03T09:20:00', '2026-03-03T10:30:00'],
    ['T3', 'telegram', 'bot', 'c-vera', '2026-03-13T17:55:00', '2026-03-16T09:05:00', null],
    ['T4', 'whatsapp', 'main', 'c-anna-wa', '2026-03-05T15:00:00', null, null],
    ['T5', 'email', 'support', 'c-gleb', '2026-03-03T11:00:00', '2026-03-03T11:40:00', '2026-03-03T12:30:00'],
    ['T6', 'email', 'support', 'c-boris', '2026-03-20T10:00:00', null, null],
  ];
  for (const [id, channel, account, contact, created, first, csat] of tickets) {
    await db.query(
      `INSERT INTO tickets (id, number, status, channel, account, conversation, contact_id, contact, created_at, updated_at, first_response_at, csat_requested_at, last_seq)
       VALUES ($1, 1, 'open', $2, $3, '{"id":"c","kind":"private"}', $4, $5, $6, $6, $7, $8, 0)`,
      [id, channel, account, contact, JSON.stringify({ id: contact }), msk(created), first && msk(first), csat && msk(csat)],
    );
  }
  let seq = 0;
  // ticket, direction, at (MSK), answered (MSK), purpose
  const messages: Array<[string, 'inbound' | 'outbound', string, string | null, string | null]> = [
    ['T1', 'inbound', '2026-03-02T10:00:00', '2026-03-02T10:05:00', null], // M1: 300 s
    ['T1', 'outbound', '2026-03-02T10:00:30', null, 'acknowledgement'], // not an agent reply
    ['T1', 'inbound', '2026-03-02T10:01:00', '2026-03-02T10:05:00', null], // M2: 240 s
    ['T1', 'outbound', '2026-03-02T10:05:00', null, 'agent_reply'],
    ['T2', 'inbound', '2026-03-02T17:50:00', '2026-03-03T09:20:00', null], // M3: 10 + 20 min of business time
    ['T5', 'inbound', '2026-03-03T11:00:00', '2026-03-03T11:40:00', null], // M5: 2400 s
    ['T2', 'outbound', '2026-03-03T09:20:00', null, 'agent_reply'],
    ['T5', 'outbound', '2026-03-03T11:40:00', null, null], // before purposes existed: an agent reply
    ['T5', 'inbound', '2026-03-03T11:50:00', null, null], // M7: unanswered, but T5 is resolved at 12:00
    ['T4', 'inbound', '2026-03-05T15:00:00', null, null], // M4: never answered
    ['T3', 'inbound', '2026-03-13T17:55:00', '2026-03-16T09:05:00', null], // M6: 5 + 5 min across a weekend
    ['T3', 'outbound', '2026-03-16T09:05:00', null, 'agent_reply'], // after the range
  ];
  for (const [ticket, direction, at, answered, purpose] of messages) {
    const t = tickets.find((x) => x[0] === ticket)!;
    await db.query(
      `INSERT INTO messages (seq, ticket_id, id, direction, purpose, channel, account, at, text, answered_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'текст', $9)`,
      [++seq, ticket, `m${seq}`, direction, purpose, t[1], t[2], msk(at), answered && msk(answered)],
    );
  }
  const statuses: Array<[string, string, string]> = [
    ['T1', 'resolved', '2026-03-02T12:00:00'],
    ['T2', 'resolved', '2026-03-03T10:00:00'],
    ['T5', 'resolved', '2026-03-03T12:00:00'],
    ['T1', 'closed', '2026-03-04T12:00:00'],
  ];
  for (const [ticket, to, at] of statuses) {
    await db.query(`INSERT INTO status_changes (seq, ticket_id, to_status, at) VALUES ($1, $2, $3, $4)`, [++seq, ticket, to, msk(at)]);
  }
  const ratings: Array<[string, number, string]> = [
    ['T1', 5, '2026-03-02T13:00:00'],
    ['T2', 3, '2026-03-03T11:00:00'],
    ['T5', 4, '2026-03-04T10:00:00'],
    ['T6', 1, '2026-03-20T12:00:00'], // after the range
  ];
  for (const [ticket, rating, at] of ratings) {
    const t = tickets.find((x) => x[0] === ticket)!;
    await db.query(`INSERT INTO ratings (seq, ticket_id, channel, account, rating, low, event_id, at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`, [++seq, ticket, t[1], t[2], rating, rating <= 3, `r${seq}`, msk(at)]);
  }
}
