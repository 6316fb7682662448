/**
 * Business time: how much of an interval falls inside working hours in a time zone (Moscow by
 * default: Mon–Fri 09:00–18:00). SLA clocks run only then, as support teams count them.
 */
export interface BusinessHours {
  timezone: string;
  /** ISO weekdays: 1 = Monday … 7 = Sunday. */
  days: number[];
  from: string;
  to: string;
}

const DAY = 86_400_000;

function parts(instant: number, timezone: string) {
  const f = new Intl.DateTimeFormat('en-GB', {
    timeZone: timezone, year: 'numeric', month: '2-digit', day: '2-digit', hour: '2-digit', minute: '2-digit', second: '2-digit', weekday: 'short', hourCycle: 'h23',
  });
  const p = Object.fromEntries(f.formatToParts(new Date(instant)).map((x) => [x.type, x.value]));
  return { y: Number(p.year), m: Number(p.month), d: Number(p.day), h: Number(p.hour), min: Number(p.minute), s: Number(p.second), weekday: p.weekday! };
}

/** UTC offset of the zone at that instant, in ms (Moscow: +3 h). */
function offsetAt(instant: number, timezone: string): number {
  const p = parts(instant, timezone);
  return Date.UTC(p.y, p.m - 1, p.d, p.h, p.min, p.s) - Math.floor(instant / 1000) * 1000;
}

const WEEKDAY: Record<string, number> = { Mon: 1, Tue: 2, Wed: 3, Thu: 4, Fri: 5, Sat: 6, Sun: 7 };

function minutes(hhmm: string): number {
  const [h, m] = hhmm.split(':').map(Number);
  return h! * 60 + m!;
}

/** Milliseconds of [start, end) inside business hours; with no hours configured, the plain difference. */
export function businessMs(start: number, end: number, hours: BusinessHours | null): number {
  if (end <= start) return 0;
  if (!hours) return end - start;
  const open = minutes(hours.from) * 60_000;
  const close = minutes(hours.to) * 60_000;
  let total = 0;
  // Walk local calendar days from the one containing `start`.
  const first = parts(start, hours.timezone);
  let dayUtc = Date.UTC(first.y, first.m - 1, first.d); // local midnight, expressed as if it were UTC
  for (let guard = 0; guard < 4000; guard++) {
    const offset = offsetAt(dayUtc - offsetAt(dayUtc, hours.timezone) + 12 * 3_600_000, hours.timezone);
    const midnight = dayUtc - offset; // the real instant of local midnight
    if (midnight >= end) break;
    const weekday = WEEKDAY[parts(midnight + 12 * 3_600_000, hours.timezone).weekday]!;
    if (hours.days.includes(weekday)) {
      const a = Math.max(start, midnight + open);
      const b = Math.min(end, midnight + close);
      if (b > a) total += b - a;
    }
    dayUtc += DAY;
  }
  return total;
}
