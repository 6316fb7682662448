import { describe, expect, it } from 'vitest';
import { businessMs } from '../../src/router/business-hours.js';
import { BusinessHoursConfig } from '../../src/core/config-calendar.js';

const H = 3_600_000;
const cal = (v: unknown) => BusinessHoursConfig.parse(v);
const t = (s: string) => Date.parse(s);

describe('business hours', () => {
  const moscow = cal({});
  it('counts only Mon–Fri 09:00–18:00 MSK by default', () => {
    // Friday 2026-11-27 17:00 MSK (14:00 UTC) → Monday 2026-11-30 10:00 MSK (07:00 UTC): 1 h + 1 h.
    expect(businessMs(t('2026-11-27T14:00:00Z'), t('2026-11-30T07:00:00Z'), moscow)).toBe(2 * H);
    // A night inside one weekday counts nothing.
    expect(businessMs(t('2026-11-24T16:00:00Z'), t('2026-11-25T05:00:00Z'), moscow)).toBe(0);
    expect(businessMs(0, 5 * H, null)).toBe(5 * H);
  });

  it('keeps the legacy from/to form, and "to" may be 24:00', () => {
    expect(cal({ from: '10:00', to: '24:00' }).intervals).toEqual([{ from: 600, to: 1440 }]);
  });

  it('counts several intervals per day (a lunch break)', () => {
    const split = cal({ hours: ['09:00-13:00', '14:00-18:00'] });
    // Tuesday 2026-11-24 08:00 → 20:00 MSK: 4 h + 4 h.
    expect(businessMs(t('2026-11-24T05:00:00Z'), t('2026-11-24T17:00:00Z'), split)).toBe(8 * H);
    // 12:30 → 14:30 MSK: 30 min before lunch, 30 min after.
    expect(businessMs(t('2026-11-24T09:30:00Z'), t('2026-11-24T11:30:00Z'), split)).toBe(H);
  });

  it('counts a night shift across midnight, as a shift of the day it starts on', () => {
    const night = cal({ hours: ['22:00-06:00'], days: [1, 2, 3, 4, 5] });
    // Friday 2026-11-27 23:00 MSK → Saturday 05:00 MSK: inside Friday's shift.
    expect(businessMs(t('2026-11-27T20:00:00Z'), t('2026-11-28T02:00:00Z'), night)).toBe(6 * H);
    // Saturday 22:00 → Sunday 06:00 MSK: Saturday is not a working day.
    expect(businessMs(t('2026-11-28T19:00:00Z'), t('2026-11-29T03:00:00Z'), night)).toBe(0);
    // Monday 00:00 → 12:00 MSK: Sunday's shift does not exist; Monday's starts at 22:00.
    expect(businessMs(t('2026-11-29T21:00:00Z'), t('2026-11-30T09:00:00Z'), night)).toBe(0);
    // A whole working week of night shifts: 5 × 8 h.
    expect(businessMs(t('2026-11-29T21:00:00Z'), t('2026-12-06T21:00:00Z'), night)).toBe(40 * H);
  });

  it('counts overlapping intervals once', () => {
    const both = cal({ hours: ['09:00-18:00', '12:00-20:00'] });
    expect(businessMs(t('2026-11-24T00:00:00Z'), t('2026-11-24T20:59:00Z'), both)).toBe(11 * H);
  });

  it('skips holidays (local dates)', () => {
    const hol = cal({ holidays: ['2026-11-04', '2027-01-01'] });
    // Wednesday 2026-11-04 is a holiday: Tue 17:00 → Thu 10:00 MSK counts 1 h + 1 h.
    expect(businessMs(t('2026-11-03T14:00:00Z'), t('2026-11-05T07:00:00Z'), hol)).toBe(2 * H);
  });

  it('counts a transferred working Saturday (workdays) and lets a holiday win over a weekday', () => {
    // Saturday 2027-11-06 made a working day, as the Russian production calendar does (outside trial t10).
    const cal2027 = cal({ workdays: ['2027-11-06'], holidays: ['2027-11-04', '2027-11-05'] });
    // Wed 2027-11-03 17:00 MSK → Mon 2027-11-08 10:00 MSK: Wed 1 h, Thu and Fri off, Sat 9 h, Mon 1 h.
    expect(businessMs(t('2027-11-03T14:00:00Z'), t('2027-11-08T07:00:00Z'), cal2027)).toBe(11 * H);
    expect(businessMs(t('2027-11-03T14:00:00Z'), t('2027-11-08T07:00:00Z'), cal({ holidays: ['2027-11-04', '2027-11-05'] }))).toBe(2 * H);
  });

  it('follows daylight saving time in zones that have it', () => {
    const berlin = cal({ timezone: 'Europe/Berlin', days: [1, 2, 3, 4, 5, 6, 7], hours: ['00:00-24:00'] });
    // 2026-03-29 is 23 hours long in Berlin.
    expect(businessMs(t('2026-03-28T23:00:00Z'), t('2026-03-29T22:00:00Z'), berlin)).toBe(23 * H);
    const nine = cal({ timezone: 'Europe/Berlin', days: [7], hours: ['09:00-10:00'] });
    expect(businessMs(t('2026-03-29T06:00:00Z'), t('2026-03-29T09:00:00Z'), nine)).toBe(H); // 09:00 CEST = 07:00Z
  });

  it.each([
    [{ hours: ['25:00-18:00'] }, /not an interval/],
    [{ hours: ['09:00-09:00'] }, /empty/],
    [{ hours: ['9-18'] }, /not an interval/],
    [{ from: '25:00' }, /HH:MM/],
    [{ from: '09:00', to: '09:00' }, /empty/],
    [{ days: [] }, /at least one working day/],
    [{ days: [0] }, /ISO weekday number, 1 = Monday/],
    [{ hours: [] }, /at least one interval/],
    [{ hours: ['09:00-18:00'], from: '10:00' }, /either `hours`/],
    [{ timezone: 'Europe/Moskva' }, /IANA time zone/],
    [{ holidays: ['2026-02-30'] }, /YYYY-MM-DD/],
    [{ workdays: ['2027-11-06'], holidays: ['2027-11-06'] }, /both a holiday and a working day/],
    [{ workdays: ['6 Nov'] }, /YYYY-MM-DD/],
  ])('refuses %j', (value, message) => {
    const r = BusinessHoursConfig.safeParse(value);
    expect(r.success).toBe(false);
    expect(r.error!.issues.map((i) => i.message).join('; ')).toMatch(message);
  });
});
