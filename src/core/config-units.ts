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

/**
 * Ports the fetch standard never calls (other protocols' ports: SMTP, IMAP, X11, IRC…): a URL on
 * one failed every call with undici's bare "fetch failed" (cause: "bad port"), retried until the
 * reply was given up, and the config was accepted.
 */
const FETCH_BLOCKED_PORTS = new Set([
  1, 7, 9, 11, 13, 15, 17, 19, 20, 21, 22, 23, 25, 37, 42, 43, 53, 69, 77, 79, 87, 95, 101, 102, 103, 104, 109, 110, 111, 113, 115, 117, 119, 123,
  135, 137, 139, 143, 161, 179, 389, 427, 465, 512, 513, 514, 515, 526, 530, 531, 532, 540, 548, 554, 556, 563, 587, 601, 636, 989, 990, 993, 995,
  1719, 1720, 1723, 2049, 3659, 4045, 4190, 5060, 5061, 6000, 6566, 6665, 6666, 6667, 6668, 6669, 6679, 6697, 10080,
]);

/** Why fetch will not call this URL's port, or undefined when it will. */
export function blockedPortOf(url: string): number | undefined {
  try {
    const port = Number(new URL(url).port);
    return port && FETCH_BLOCKED_PORTS.has(port) ? port : undefined;
  } catch {
    return undefined;
  }
}

const HTTP_URL = 'an http:// or https:// URL such as "https://helpdesk.example.ru/omnigate/events"';

/**
 * An http(s) URL that fetch will call: not on a port the fetch standard blocks. The scheme is
 * checked: "helpdesk.example.ru:8443/hook" parses as a URL of scheme "helpdesk.example.ru:" and
 * was accepted, to fail at every delivery instead.
 */
export const FetchableUrl = z
  .string()
  .superRefine((u, ctx) => {
    let scheme: string;
    try {
      scheme = new URL(u).protocol;
    } catch {
      ctx.addIssue({ code: 'custom', message: `${HTTP_URL}; "${u}" is no URL` });
      return;
    }
    if (scheme !== 'http:' && scheme !== 'https:') {
      ctx.addIssue({ code: 'custom', message: `${HTTP_URL}; "${u}" has the scheme "${scheme}" (write "https://" before the host)` });
      return;
    }
    if (/^[a-z][a-z0-9+.-]*:\/\/[^/?#]*:0+(?:[/?#]|$)/i.test(u)) ctx.addIssue({ code: 'custom', message: 'port 0 is no port anything listens on: give the real one' });
    const port = blockedPortOf(u);
    if (port) ctx.addIssue({ code: 'custom', message: `port ${port} is one HTTP clients refuse to call (it belongs to another protocol): use another port` });
  });
