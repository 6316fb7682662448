/**
 * Crash-only: an unhandled rejection or an uncaught exception means a bug left some state we
 * cannot vouch for (a lane never released, a lease believed held). Continuing would hide it, so
 * the process logs it and exits with code 70 (EX_SOFTWARE) for the supervisor (systemd, Docker,
 * Kubernetes) to start a clean one. Everything the gateway does is safe to cut at any point (that
 * is what the exactly-once design is for); before exiting it still tries, for at most
 * CRASH_STOP_MS, to stop in order, so held messages are handed back and leases released at once
 * rather than after their timeouts.
 */
import type { Logger } from './core/logger.js';
import { errorMessage } from './core/errors.js';

export const CRASH_EXIT_CODE = 70;
const CRASH_STOP_MS = 5_000;

export function installCrashPolicy(log: Logger, stop: () => Promise<unknown>, exit: (code: number) => void = (c) => process.exit(c)): void {
  let crashing = false;
  const crash = (kind: string, err: unknown) => {
    const stack = err instanceof Error ? err.stack : undefined;
    log.fatal({ err: errorMessage(err), stack }, `${kind}: exiting (crash-only policy)`);
    if (crashing) return;
    crashing = true;
    const timer = setTimeout(() => exit(CRASH_EXIT_CODE), CRASH_STOP_MS);
    timer.unref();
    stop().then(
      () => exit(CRASH_EXIT_CODE),
      () => exit(CRASH_EXIT_CODE),
    );
  };
  process.on('unhandledRejection', (err) => crash('unhandled rejection', err));
  process.on('uncaughtException', (err) => crash('uncaught exception', err));
}
