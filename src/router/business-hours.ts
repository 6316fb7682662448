/**
 * Business time: how much of an interval falls inside working hours in a time zone (Moscow by
 * default: Mon–Fri 09:00–18:00). SLA clocks run only then, as support teams count them.
 *
 * A working day has one or more intervals; an interval whose end is not after its start runs
 * past midnight into the next day (a night shift "22:00-06:00" belongs to the day it starts on,
 * so `days`, `holidays` and `workdays` name the start day). Overlapping intervals count once. A
 * holiday wins over a working weekday, a transferred working day (`workdays`) over a day off.
 */
import type { BusinessHours } from '../core/config-calendar.js';
import type { Opening } from '../core/texts.js';

export type { BusinessHours };

const DAY = 86_400_000;
const MIN = 60_000;

const formatters = new Map<string, Intl.DateTimeFormat>();
function formatter(timezone: string): Intl.DateTimeFormat {
  let f = formatters.get(timezone);
  if (!f) {
    f = new Intl.DateTimeFormat('en-GB', {
      timeZone: timezone, year: 'numeric', month: '2-digit', day: '2-digit', hour: '2-digit', minute: '2-digit', second: '2-digit', hourCycle: 'h23',
    });
    formatters.set(timezone, f);
  }
  return f;
}

/** The local calendar date and time at an instant, expressed as if local time were UTC. */
function localAsUtc(instant: number, timezone: string): number {
  const p = Object.fromEntries(formatter(timezone).formatToParts(new Date(instant)).map((x) => [x.type, x.value]));
  return Date.UTC(Number(p.year), Number(p.month) - 1, Number(p.day), Number(p.hour), Number(p.minute), Number(p.second));
}

// Offsets change on whole hours in every zone in use, so one lookup per zone and hour is enough;
// a ticket open for weeks would otherwise cost thousands of Intl calls per scan.
const offsets = new Map<string, number>();
function offsetAt(instant: number, timezone: string): number {
  const key = `${timezone}|${Math.floor(instant / 3_600_000)}`;
  let off = offsets.get(key);
  if (off === undefined) {
    if (offsets.size > 50_000) offsets.clear();
    off = localAsUtc(instant, timezone) - Math.floor(instant / 1000) * 1000;
    offsets.set(key, off);
  }
  return off;
}

/** The real instant of a local wall-clock time (local date as a UTC midnight, plus minutes). */
function instantOf(localDayUtc: number, minutes: number, timezone: string): number {
  const wall = localDayUtc + minutes * MIN;
  const guess = wall - offsetAt(wall, timezone);
  return wall - offsetAt(guess, timezone);
}

/** ISO weekday (1 = Monday) of a local date given as its UTC midnight. */
function weekday(localDayUtc: number): number {
  return ((new Date(localDayUtc).getUTCDay() + 6) % 7) + 1;
}

/** Working intervals, as real instants, of the local days from the one before `start` to the one of `end`. */
function segments(start: number, end: number, hours: BusinessHours): Array<[number, number]> {
  const out: Array<[number, number]> = [];
  const holidays = new Set(hours.holidays);
  const workdays = new Set(hours.workdays ?? []);
  const first = Math.floor(localAsUtc(start, hours.timezone) / DAY) * DAY - DAY;
  const last = Math.floor(localAsUtc(end, hours.timezone) / DAY) * DAY;
  for (let day = first; day <= last; day += DAY) {
    const date = new Date(day).toISOString().slice(0, 10);
    if (holidays.has(date) || !(hours.days.includes(weekday(day)) || workdays.has(date))) continue;
    for (const iv of hours.intervals) {
      const to = iv.to > iv.from ? iv.to : iv.to + 1440;
      const a = Math.max(start, instantOf(day, iv.from, hours.timezone));
      const b = Math.min(end, instantOf(day, to, hours.timezone));
      if (b > a) out.push([a, b]);
    }
  }
  return out.sort((x, y) => x[0] - y[0]);
}

/** Milliseconds of [start, end) inside business hours; with no hours configured, the plain difference. */
export function businessMs(start: number, end: number, hours: BusinessHours | null): number {
  if (end <= start) return 0;
  if (!hours) return end - start;
  let total = 0;
  let reached = start;
  for (const [a, b] of segments(start, end, hours)) {
    const from = Math.max(a, reached);
    if (b > from) total += b - from;
    reached = Math.max(reached, b);
  }
  return total;
}

/**
 * Whether `at` falls inside business hours, and if not, the instant they next begin (null: none
 * within a year — a calendar of nothing but holidays). The auto-acknowledgement tells a customer
 * who writes on Friday night when someone will read it; it walks the same working intervals the
 * SLA clocks count, so the promise and the clock never disagree.
 */
export function nextOpening(at: number, hours: BusinessHours): Opening {
  // A week at a time: most answers are within days, and the New Year holidays fit in two steps.
  for (let from = at; from < at + 366 * DAY; from += 7 * DAY) {
    const found = segments(from, from + 7 * DAY, hours)[0];
    // Segments are clipped to the window, so one running at `at` starts exactly there.
    if (found) return found[0] === at ? { open: true } : { open: false, at: found[0] };
  }
  return { open: false, at: null };
}
