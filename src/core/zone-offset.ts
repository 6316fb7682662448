/**
 * A time zone's UTC offset, shown next to each configured zone by check-config: the name alone
 * hides that a POSIX-style `Etc/GMT+3` is three hours *behind* UTC (the sign is inverted), which
 * passed for Moscow time while being six hours off it.
 */

const MINUS = '\u2212'; // the minus sign, not a hyphen: "UTC−03:00" reads as an offset

/** Minutes east of UTC in `zone` at `at` (negative west of Greenwich). */
export function utcOffsetMinutes(zone: string, at: Date): number {
  const name = new Intl.DateTimeFormat('en-US', { timeZone: zone, timeZoneName: 'longOffset' }).formatToParts(at).find((p) => p.type === 'timeZoneName')?.value ?? '';
  // "GMT+05:30", "GMT-03:00"; some ICU versions write UTC itself as plain "GMT".
  const m = /^GMT(?:([+-])(\d{2}):(\d{2}))?$/.exec(name);
  if (!m) throw new Error(`no UTC offset for time zone ${zone} (got "${name}")`);
  if (!m[1]) return 0;
  const minutes = Number(m[2]) * 60 + Number(m[3]);
  return m[1] === '-' ? -minutes : minutes;
}

/** "UTC+03:00", "UTC−03:00", "UTC+05:30". */
export function offsetText(minutes: number): string {
  const abs = Math.abs(minutes);
  return `UTC${minutes < 0 ? MINUS : '+'}${String(Math.floor(abs / 60)).padStart(2, '0')}:${String(abs % 60).padStart(2, '0')}`;
}

/** "Etc/GMT+3 (UTC−03:00 now)": "now" because a zone with summer time has two offsets. */
export function zoneWithOffset(zone: string, at: Date): string {
  return `${zone} (${offsetText(utcOffsetMinutes(zone, at))} now)`;
}

/**
 * A warning for an `Etc/GMT±N` zone (N > 0), whose sign is the opposite of what it looks like
 * (POSIX counts hours west of Greenwich as positive); undefined for any other zone. Not refused:
 * a fixed offset is a legitimate choice, written this way on purpose by some.
 */
export function invertedSignWarning(key: string, zone: string): string | undefined {
  const m = /^Etc\/GMT([+-])(\d{1,2})$/i.exec(zone);
  if (!m || Number(m[2]) === 0) return undefined;
  const real = offsetText((m[1] === '+' ? -1 : 1) * Number(m[2]) * 60);
  const looks = offsetText((m[1] === '+' ? 1 : -1) * Number(m[2]) * 60);
  const meant = `Etc/GMT${m[1] === '+' ? '-' : '+'}${Number(m[2])}`;
  return `${key}: ${zone} is ${real}, not ${looks}: in Etc/GMT±N names the sign is inverted (POSIX). Name the place's zone (e.g. Europe/Moscow, Asia/Yekaterinburg), or write ${meant} for a fixed ${looks}`;
}
