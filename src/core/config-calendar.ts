/**
 * Config types for clocks and calendars: a wall-clock time, a time zone checked against the
 * runtime's time-zone database, and business hours (days, one or more intervals, holidays).
 * A calendar that can never produce working time is refused here: every SLA timer on it would
 * silently never fire.
 */
import { z } from 'zod';

/** "HH:MM", 00:00–23:59 ("24:00" only where `endOfDay` allows, as an interval's end). */
function minutesOf(hhmm: string, endOfDay = false): number | undefined {
  const m = /^(\d{1,2}):(\d{2})$/.exec(hhmm.trim());
  if (!m) return undefined;
  const h = Number(m[1]);
  const min = Number(m[2]);
  if (min > 59) return undefined;
  if (h < 24) return h * 60 + min;
  return endOfDay && h === 24 && min === 0 ? 1440 : undefined;
}

export const ClockTime = z.string().refine((s) => minutesOf(s) !== undefined, 'a time "HH:MM" from 00:00 to 23:59');

/** An IANA zone name the runtime knows ("Europe/Moscow", "Asia/Yekaterinburg", "UTC"). */
export const TimeZone = z.string().refine((tz) => {
  try {
    new Intl.DateTimeFormat('en-GB', { timeZone: tz });
    return true;
  } catch {
    return false;
  }
}, 'an IANA time zone such as "Europe/Moscow", "Asia/Yekaterinburg" or "UTC"');

/** "09:00-13:00"; "22:00-06:00" runs past midnight; "00:00-24:00" is the whole day. */
export const Interval = z.string().transform((s, ctx) => {
  const m = /^\s*([^-–—\s]+)\s*[-–—]\s*([^-–—\s]+)\s*$/.exec(s);
  const from = m ? minutesOf(m[1]!) : undefined;
  const to = m ? minutesOf(m[2]!, true) : undefined;
  if (from === undefined || to === undefined) {
    ctx.addIssue({ code: 'custom', message: `"${s}" is not an interval "HH:MM-HH:MM" (times 00:00–23:59, "24:00" as an end)` });
    return z.NEVER;
  }
  if (from === to) {
    ctx.addIssue({ code: 'custom', message: `"${s}" is empty (start equals end); write "00:00-24:00" for the whole day` });
    return z.NEVER;
  }
  return { from, to };
});

const IsoDate = z.string().refine((s) => /^\d{4}-\d{2}-\d{2}$/.test(s) && new Date(`${s}T00:00:00Z`).toISOString().slice(0, 10) === s, 'a date "YYYY-MM-DD"');

// Names ("пн", "Mon") and JavaScript's 0 = Sunday are the usual guesses: the message says which numbering.
const WEEKDAY = 'an ISO weekday number, 1 = Monday … 7 = Sunday (write [1, 2, 3, 4, 5] for Mon–Fri; no names, no 0)';
const weekday = z.number({ error: WEEKDAY }).int(WEEKDAY).min(1, WEEKDAY).max(7, WEEKDAY);

export interface BusinessHours {
  timezone: string;
  /** ISO weekdays on which the intervals start: 1 = Monday … 7 = Sunday. */
  days: number[];
  /** Minutes after local midnight; `to` <= `from` means the interval ends the next day. */
  intervals: Array<{ from: number; to: number }>;
  /** Local dates ("YYYY-MM-DD") on which no interval starts. */
  holidays: string[];
  /**
   * Local dates that are working days although their weekday is not in `days`: the Russian
   * production calendar moves holidays by making a Saturday a working day (2024-11-02 was one).
   */
  workdays?: string[];
}

export const BusinessHoursConfig = z
  .object({
    timezone: TimeZone.default('Europe/Moscow'),
    days: z
      .array(weekday)
      .min(1, 'at least one working day (1 = Monday … 7 = Sunday); with no working time no SLA timer could fire — use `businessHours: null` for a 24/7 clock')
      .refine((d) => new Set(d).size === d.length, 'each day once')
      .default([1, 2, 3, 4, 5]),
    /** One or more working intervals per day. */
    hours: z.array(Interval).min(1, 'at least one interval such as "09:00-18:00"').optional(),
    /** Shorthand for one interval; `hours` is the general form. */
    from: ClockTime.optional(),
    to: z.string().refine((s) => minutesOf(s, true) !== undefined, 'a time "HH:MM" from 00:00 to 24:00').optional(),
    holidays: z.array(IsoDate).default([]),
    /** Working days outside `days` (a transferred working Saturday): the day gets the usual intervals. */
    workdays: z.array(IsoDate).default([]),
  })
  .superRefine((v, ctx) => {
    const both = v.workdays.filter((d) => v.holidays.includes(d));
    if (both.length) {
      ctx.addIssue({ code: 'custom', path: ['workdays'], message: `${both.join(', ')} is both a holiday and a working day: keep it in one list` });
    }
    if (v.hours && (v.from !== undefined || v.to !== undefined)) {
      ctx.addIssue({ code: 'custom', path: ['hours'], message: 'give either `hours` (a list of intervals) or `from`/`to`, not both' });
    }
    if (!v.hours && (v.from ?? '09:00') === (v.to ?? '18:00')) {
      ctx.addIssue({ code: 'custom', path: ['to'], message: '`from` equals `to`: the working day is empty; write hours: ["00:00-24:00"] for the whole day' });
    }
  })
  .transform((v): BusinessHours => ({
    timezone: v.timezone,
    days: [...v.days].sort(),
    intervals: v.hours ?? [{ from: minutesOf(v.from ?? '09:00')!, to: minutesOf(v.to ?? '18:00', true)! }],
    holidays: v.holidays,
    workdays: v.workdays,
  }));

/** "09:00" from minutes after midnight (for check-config and texts). */
export function clockText(minutes: number): string {
  const m = minutes % 1440 === 0 && minutes > 0 ? 1440 : minutes % 1440;
  return `${Math.floor(m / 60)}:${String(m % 60).padStart(2, '0')}`;
}
