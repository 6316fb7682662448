/**
 * GET /v1/reports/{kind} over HTTP on a whole gateway (PGlite): the hand-computed fixture of
 * test/reports/reports.test.ts written into the gateway's own read model, then read back as JSON
 * and as CSV (by Accept and by format=csv), with dates in the reports' zone, and the refusals.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { READER, startApiHarness, type ApiHarness } from './support.js';
import { loadFixture } from '../helpers/report-fixture.js';

let h: ApiHarness;
beforeAll(async () => {
  h = await startApiHarness();
  await loadFixture((await h.gw.gateway.readModel!.database()));
}, 120_000);
afterAll(async () => h?.stop());

// Bare dates are midnight in Moscow (the business hours' zone): the fixture's two weeks.
const RANGE = 'from=2026-03-02&to=2026-03-16';

describe('GET /v1/reports/{kind}', () => {
  it('answers JSON with medians and p90 in business time, for a read-only token too', async () => {
    const r = await h.api(`/v1/reports/first-response?${RANGE}`, { token: READER });
    expect(r.status).toBe(200);
    expect(r.body).toEqual({
      report: 'first-response',
      from: '2026-03-01T21:00:00.000Z',
      to: '2026-03-15T21:00:00.000Z',
      groupBy: null,
      businessHours: true,
      timezone: 'Europe/Moscow',
      unit: 'seconds',
      rows: [{ group: 'all', tickets: 5, answered: 4, unanswered: 1, avgSeconds: 1275, medianSeconds: 1200, p90Seconds: 2220, maxSeconds: 2400 }],
    });
    const wall = await h.api(`/v1/reports/first-response?${RANGE}&businessHours=false`);
    expect(wall.body.rows[0]).toMatchObject({ medianSeconds: 29100, p90Seconds: 175920 });
    const repeat = await h.api(`/v1/reports/repeat-contacts?${RANGE}&days=20`);
    expect(repeat.body.rows).toEqual([{ group: 'all', contacts: 3, repeated: 2, rate: 0.6667, windowDays: 20 }]);
  });

  it('answers CSV for Accept: text/csv and for format=csv', async () => {
    const expected = 'group,created,inbound,replies,resolved,resolvedUndelivered\r\n2026-03-02,2,3,1,1,0\r\n2026-03-03,1,2,2,2,0\r\n2026-03-05,1,1,0,0,0\r\n2026-03-13,1,1,0,0,0\r\n';
    const byAccept = await fetch(`${h.gw.httpUrl}/v1/reports/volume?${RANGE}&groupBy=day`, { headers: { authorization: `Bearer ${READER}`, accept: 'text/csv' } });
    expect(byAccept.status).toBe(200);
    expect(byAccept.headers.get('content-type')).toMatch(/^text\/csv/);
    expect(byAccept.headers.get('content-disposition')).toBe('attachment; filename="volume-2026-03-02-2026-03-16.csv"');
    expect(await byAccept.text()).toBe(expected);
    const byFormat = await h.api(`/v1/reports/volume?${RANGE}&groupBy=day&format=csv`);
    expect(byFormat.body).toBe(expected);
  });

  it('answers an empty report in CSV with its whole header', async () => {
    const empty = await fetch(`${h.gw.httpUrl}/v1/reports/repeat-contacts?from=2020-01-06&to=2020-01-07&groupBy=account`, { headers: { authorization: `Bearer ${READER}`, accept: 'text/csv' } });
    expect(empty.status).toBe(200);
    expect(await empty.text()).toBe('group,contacts,repeated,rate,windowDays\r\n');
  });

  it('refuses unknown reports, bad ranges and groupings, and requests without a token', async () => {
    const unknown = await h.api(`/v1/reports/happiness?${RANGE}`);
    expect(unknown.status).toBe(404);
    expect(unknown.body.error).toMatchObject({ code: 'not_found', field: 'kind' });
    expect((await h.api('/v1/reports/volume?from=2026-03-16&to=2026-03-02')).body.error).toMatchObject({ code: 'invalid_request', field: 'to' });
    expect((await h.api('/v1/reports/volume?to=2026-03-02')).body.error).toMatchObject({ code: 'invalid_request', field: 'from' });
    expect((await h.api(`/v1/reports/volume?${RANGE}&groupBy=month`)).body.error).toMatchObject({ code: 'invalid_request', field: 'groupBy' });
    expect((await h.api('/v1/reports/volume?from=2024-01-01&to=2026-01-01')).body.error).toMatchObject({ code: 'invalid_request', field: 'to' });
    const badFrom = (await h.api('/v1/reports/volume?from=bad&to=2026-01-01')).body.error;
    expect(badFrom).toMatchObject({ code: 'invalid_request', field: 'from' });
    expect(badFrom.message).toContain('ISO date');
    expect((await h.api(`/v1/reports/volume?${RANGE}`, { token: null })).status).toBe(401);
  });
});
