/**
 * Durations and sizes as people write them ("30s", "7d", "20MB"), read into milliseconds and
 * bytes. Apart from the sections that use them because connector and helpdesk modules check
 * their own options with the same words, and should not pull in the whole config to do so.
 */
import { z } from 'zod';

/** `y` is 365 days: retention is set in years by those who answer for personal data (152-FZ). */
const UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000, y: 365 * 86_400_000 };

/**
 * "30s", "7d", "1500ms", or 0. A bare number other than 0 is refused: `reopenWindow: 3` (or
 * OMNIGATE_ROUTER__REOPEN_WINDOW=3) was read as 3 ms where 3 days or minutes were meant, and
 * the gateway started without a word. Zero needs no unit.
 */
export const Duration = z.union([
  z.number().superRefine((n, ctx) => {
    if (n === 0) return;
    const message = n > 0 && Number.isFinite(n) ? `${n} has no unit: write "${n}s", "${n}m", "${n}h", "${n}d" or "${n}ms"` : 'a duration such as "500ms", "30s", "10m", "2h" or "7d"';
    ctx.addIssue({ code: 'custom', message });
  }),
  z
    .string()
    .regex(/^\d+(\.\d+)?(ms|s|m|h|d|y)$/, 'a duration such as "500ms", "30s", "10m", "2h", "7d" or "3y"')
    .transform((s) => {
      const [, n, unit] = /^(\d+(?:\.\d+)?)(ms|s|m|h|d|y)$/.exec(s)!;
      return Math.round(Number(n) * UNITS[unit!]!);
    }),
]);

/** A duration where zero makes no sense (an interval, a limit, a timeout). */
export const PositiveDuration = Duration.refine((ms) => ms > 0, 'more than 0: a zero duration makes no sense here');

const SIZE_UNITS: Record<string, number> = { b: 1, kb: 1024, mb: 1024 ** 2, gb: 1024 ** 3 };
/** "20MB", "512KB" or a number of bytes. */
export const ByteSize = z.union([
  z.number().int().nonnegative(),
  z
    .string()
    .regex(/^\d+(\.\d+)?\s*(b|kb|mb|gb)$/i, 'a size such as "512KB", "20MB" or a number of bytes')
    .transform((s) => {
      const [, n, unit] = /^(\d+(?:\.\d+)?)\s*(b|kb|mb|gb)$/i.exec(s)!;
      return Math.round(Number(n) * SIZE_UNITS[unit!.toLowerCase()]!);
    }),
]);
