/**
 * The gateway's bounded stop: steps that run in parallel against a deadline, so one that hangs
 * is named and left behind instead of holding the process past shutdownTimeout.
 */
import type { Logger } from './core/logger.js';
import { errorMessage } from './core/errors.js';

/** Runs the steps in parallel; false, with the laggards named, if `deadline` comes first. */
export async function stopWithin(log: Logger, deadline: number, steps: Record<string, () => Promise<unknown> | undefined>): Promise<boolean> {
  const pending = new Set(Object.keys(steps));
  // Each step catches its own failure, so an abandoned one cannot become an unhandled rejection.
  const all = Promise.all(
    Object.entries(steps).map(async ([component, step]) => {
      try {
        await step();
      } catch (err) {
        log.warn({ component, err: errorMessage(err) }, 'stop failed');
      } finally {
        pending.delete(component);
      }
    }),
  ).then(() => true);
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<boolean>((r) => {
    timer = setTimeout(() => r(false), Math.max(0, deadline - Date.now()));
  });
  const inTime = await Promise.race([all, late]);
  clearTimeout(timer);
  if (!inTime) log.error({ pending: [...pending] }, 'shutdownTimeout reached: abandoning components still stopping');
  return inTime;
}
