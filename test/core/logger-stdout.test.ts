/**
 * A stdout that stops taking output (a stalled log collector, a parent gone with its end of the
 * pipe still open) neither grows the gateway's memory without bound nor keeps it from exiting:
 * past 16 MB lines are dropped and counted, and the exit flush gives up on a full pipe. Before,
 * pino's default stream retried the flush for ever and the process ignored every way out but
 * SIGKILL. Run as a child process whose stdout is a pipe nobody reads (the stdin of a `sleep`).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';

const root = new URL('../..', import.meta.url).pathname;
const tsx = createRequire(join(root, 'package.json')).resolve('tsx');
const children: ChildProcess[] = [];

afterEach(() => {
  for (const c of children.splice(0)) c.kill('SIGKILL');
});

/** Runs the fixture with `lines` log lines into a pipe no one reads; its exit code and stderr, or 'hung' after 30 s. */
async function logIntoStalledPipe(lines: number): Promise<{ code: number | null | 'hung'; stderr: string }> {
  const reader = spawn('sleep', ['120'], { stdio: ['pipe', 'ignore', 'ignore'] });
  children.push(reader);
  const child = spawn(process.execPath, ['--import', tsx, join(root, 'test/fixtures/stalled-stdout.ts')], {
    cwd: root,
    env: { ...process.env, LINES: String(lines) },
    stdio: ['ignore', reader.stdin!, 'pipe'],
  });
  children.push(child);
  let stderr = '';
  child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  const code = await new Promise<number | null | 'hung'>((resolve) => {
    const timer = setTimeout(() => resolve('hung'), 30_000);
    child.once('exit', (c) => {
      clearTimeout(timer);
      resolve(c);
    });
  });
  return { code, stderr };
}

describe('logging to a stdout nobody reads', () => {
  it('exits when asked, with its last lines still waiting for the pipe', async () => {
    // ~4 MB: far more than the pipe holds, less than the buffer's bound.
    const { code, stderr } = await logIntoStalledPipe(10_000);
    expect(code, stderr).toBe(0);
    expect(stderr).toContain('dropped 0');
    expect(stderr).not.toContain('EAGAIN'); // what the pipe did not take is left quietly
  }, 60_000);

  it('drops and counts what is past 16 MB instead of holding it', async () => {
    const { code, stderr } = await logIntoStalledPipe(60_000);
    expect(code, stderr).toBe(0);
    const dropped = Number(/dropped (\d+)/.exec(stderr)?.[1]);
    expect(dropped).toBeGreaterThan(10_000);
    expect(dropped).toBeLessThan(60_000);
  }, 60_000);
});
