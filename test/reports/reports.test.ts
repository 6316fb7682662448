/**
 * Every report on one small fixture whose answers were computed by hand (below, next to each
 * expectation), on PGlite and on PostgreSQL. The fixture is written straight into the read
 * model's tables (the projection's output), so these tests pin the report definitions; that the
 * projection fills those tables from the log is the projection's own test.
 *
 * Calendar: Mon–Fri 09:00–18:00 Europe/Moscow (UTC+3 all year). Range: the two weeks
 * 2026-03-02 00:00 — 2026-03-16 00:00 Moscow time. 2026-03-02 is a Monday.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { REPORT_COLUMNS, REPORT_KINDS, runReport, toCsv, type ReportQuery } from '../../src/reports/reports.js';
import type { Database } from '../../src/read-model/database.js';
import { BASE, loadFixture, msk } from '../helpers/report-fixture.js';
import { migrate } from '../../src/read-model/migrations.js';
import { openTestDatabase } from '../helpers/sql.js';

describe.each([['pglite'], ['postgres']] as const)('reports on %s', (engine) => {
  let t: { db: Database; cleanup(): Promise<void> };
  beforeAll(async () => {
    t = await openTestDatabase(engine);
    await migrate(t.db);
    await loadFixture(t.db);
  }, 120_000);
  afterAll(async () => {
    await t?.db.close();
    await t?.cleanup();
  });

  const rows = async (kind: Parameters<typeof runReport>[1], q: Partial<ReportQuery> = {}) => (await runReport(t.db, kind, { ...BASE, ...q })).rows;

  it('first response in business time: count, average, median, p90', async () => {
    // Answered in range: T1 300, T2 600+1200=1800, T3 300+300=600 (weekend skipped), T5 2400; T4 unanswered.
    // Sorted 300, 600, 1800, 2400: avg 1275, median (600+1800)/2=1200, p90 at 2.7: 1800+0.7*600=2220.
    expect(await rows('first-response')).toEqual([
      { group: 'all', tickets: 5, answered: 4, unanswered: 1, avgSeconds: 1275, medianSeconds: 1200, p90Seconds: 2220, maxSeconds: 2400 },
    ]);
  });

  it('first response in wall-clock time when business hours are off', async () => {
    // T1 300, T2 15h30m=55800, T3 63h10m=227400, T5 2400 → avg 71475, median (2400+55800)/2=29100, p90 55800+0.7*171600=175920.
    expect(await rows('first-response', { businessHours: null })).toEqual([
      { group: 'all', tickets: 5, answered: 4, unanswered: 1, avgSeconds: 71475, medianSeconds: 29100, p90Seconds: 175920, maxSeconds: 227400 },
    ]);
  });

  it('first response by channel and by week', async () => {
    // telegram [300, 600]: p90 300+0.9*300=570; email [1800, 2400]: p90 1800+0.9*600=2340; whatsapp: T4 only, unanswered.
    expect(await rows('first-response', { groupBy: 'channel' })).toEqual([
      { group: 'email', tickets: 2, answered: 2, unanswered: 0, avgSeconds: 2100, medianSeconds: 2100, p90Seconds: 2340, maxSeconds: 2400 },
      { group: 'telegram', tickets: 2, answered: 2, unanswered: 0, avgSeconds: 450, medianSeconds: 450, p90Seconds: 570, maxSeconds: 600 },
      { group: 'whatsapp', tickets: 1, answered: 0, unanswered: 1, avgSeconds: null, medianSeconds: null, p90Seconds: null, maxSeconds: null },
    ]);
    // Week of 03-02: T1, T2, T4, T5 → [300, 1800, 2400], p90 at 1.8: 1800+0.8*600=2280. Week of 03-09: T3 (Friday).
    expect(await rows('first-response', { groupBy: 'week' })).toEqual([
      { group: '2026-03-02', tickets: 4, answered: 3, unanswered: 1, avgSeconds: 1500, medianSeconds: 1800, p90Seconds: 2280, maxSeconds: 2400 },
      { group: '2026-03-09', tickets: 1, answered: 1, unanswered: 0, avgSeconds: 600, medianSeconds: 600, p90Seconds: 600, maxSeconds: 600 },
    ]);
  });

  it('reaction: every customer message until the next agent reply', async () => {
    // [240, 300, 600, 1800, 2400]; M4 and M7 unanswered. avg 1068, median 600, p90 at 3.6: 1800+0.6*600=2160.
    expect(await rows('reaction')).toEqual([
      { group: 'all', messages: 7, answered: 5, unanswered: 2, avgSeconds: 1068, medianSeconds: 600, p90Seconds: 2160, maxSeconds: 2400 },
    ]);
  });

  it('idle: tickets waiting for an answer at the end of the range, and for how long', async () => {
    // T4 since Thu 15:00: Thu 3h + Fri 9h + five days of 9h = 57h = 205200 s. T3 since Fri 17:55: 300 s
    // (answered only after the range). T5's M7 is unanswered but T5 was resolved: not waiting.
    expect(await rows('idle')).toEqual([
      { group: 'all', waiting: 2, avgSeconds: 102750, medianSeconds: 102750, p90Seconds: 184710, maxSeconds: 205200 },
    ]);
    expect(await rows('idle', { groupBy: 'channel' })).toEqual([
      { group: 'telegram', waiting: 1, avgSeconds: 300, medianSeconds: 300, p90Seconds: 300, maxSeconds: 300 },
      { group: 'whatsapp', waiting: 1, avgSeconds: 205200, medianSeconds: 205200, p90Seconds: 205200, maxSeconds: 205200 },
    ]);
    // Measured at Monday 03-09 00:00 instead: only T4 has written by then; T4's wait is Thu 3h + Fri 9h = 43200 s.
    expect(await rows('idle', { to: new Date(msk('2026-03-09T00:00:00')) })).toEqual([
      { group: 'all', waiting: 1, avgSeconds: 43200, medianSeconds: 43200, p90Seconds: 43200, maxSeconds: 43200 },
    ]);
  });

  it('repeat contacts: share of contacts with a new ticket within N days of a resolution', async () => {
    // Resolved in range: anna (T1, resolved and later closed: counted once), boris (T2), gleb (T5).
    // anna opened T4 three days later as c-anna-wa, merged into her; boris came back after 17 days.
    expect(await rows('repeat-contacts')).toEqual([{ group: 'all', contacts: 3, repeated: 1, rate: 0.3333, windowDays: 7 }]);
    expect(await rows('repeat-contacts', { repeatWindowMs: 20 * 86_400_000 })).toEqual([{ group: 'all', contacts: 3, repeated: 2, rate: 0.6667, windowDays: 20 }]);
    expect(await rows('repeat-contacts', { groupBy: 'channel' })).toEqual([
      { group: 'email', contacts: 2, repeated: 0, rate: 0, windowDays: 7 },
      { group: 'telegram', contacts: 1, repeated: 1, rate: 1, windowDays: 7 },
    ]);
  });

  it('satisfaction: ratings, response rate, share of 4–5, distribution', async () => {
    // 5, 3, 4 in range (the 1 on 03-20 is not); three requests. csat 2/3, average 4, median 4.
    expect(await rows('satisfaction')).toEqual([
      { group: 'all', requested: 3, ratings: 3, responseRate: 1, satisfied: 2, csat: 0.6667, average: 4, median: 4, r1: 0, r2: 0, r3: 1, r4: 1, r5: 1 },
    ]);
  });

  it('volume by day, cut in Moscow time', async () => {
    // Replies: agent replies only (the acknowledgement is not one; a reply without purpose is).
    expect(await rows('volume', { groupBy: 'day' })).toEqual([
      { group: '2026-03-02', created: 2, inbound: 3, replies: 1, resolved: 1, resolvedUndelivered: 0 },
      { group: '2026-03-03', created: 1, inbound: 2, replies: 2, resolved: 2, resolvedUndelivered: 0 },
      { group: '2026-03-05', created: 1, inbound: 1, replies: 0, resolved: 0, resolvedUndelivered: 0 },
      { group: '2026-03-13', created: 1, inbound: 1, replies: 0, resolved: 0, resolvedUndelivered: 0 },
    ]);
    // A Moscow day starts at 21:00 UTC the day before: from 03-03 00:00 MSK, Monday's rows are out.
    expect(await rows('volume', { from: new Date(msk('2026-03-03T00:00:00')), to: new Date(msk('2026-03-04T00:00:00')) })).toEqual([
      { group: 'all', created: 1, inbound: 2, replies: 2, resolved: 2, resolvedUndelivered: 0 },
    ]);
  });

  it('renders CSV with a header and quoted cells', async () => {
    const report = await runReport(t.db, 'first-response', { ...BASE, groupBy: 'channel' });
    expect(toCsv(report)).toBe(
      'group,tickets,answered,unanswered,avgSeconds,medianSeconds,p90Seconds,maxSeconds\r\n' +
        'email,2,2,0,2100,2100,2340,2400\r\n' +
        'telegram,2,2,0,450,450,570,600\r\n' +
        'whatsapp,1,0,1,,,,\r\n',
    );
  });

  it('names every column in CSV also when a report has no rows, and rows carry exactly those columns', async () => {
    // An empty report's CSV was the header `group` alone: a spreadsheet or a loader lost every other column.
    const empty = { from: new Date(msk('2020-01-06T00:00:00')), to: new Date(msk('2020-01-07T00:00:00')) };
    for (const kind of REPORT_KINDS) {
      for (const groupBy of [undefined, 'account'] as const) {
        const report = await runReport(t.db, kind, { ...BASE, ...empty, groupBy });
        expect(report.rows, kind).toEqual([]);
        expect(toCsv(report), `${kind} by ${groupBy}`).toBe(`${REPORT_COLUMNS[kind].join(',')}\r\n`);
      }
      // The declared columns are the rows' own, in order: a column added to a report must be declared.
      const full = await runReport(t.db, kind, { ...BASE, groupBy: 'channel' });
      expect(full.rows.length, kind).toBeGreaterThan(0);
      for (const row of full.rows) expect(Object.keys(row), kind).toEqual(REPORT_COLUMNS[kind]);
    }
  });
});
