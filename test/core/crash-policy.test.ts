/**
 * Crash-only: an unhandled rejection or uncaught exception is logged at fatal with its stack,
 * the gateway is asked to stop (bounded), and the process exits 70. Run in a child process,
 * since the policy installs process-wide handlers.
 */
import { testTempDir } from '../helpers/temp-dirs.js';
import { spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';

const policy = resolve('src/crash-policy.ts');
const logger = resolve('src/core/logger.ts');

function run(body: string) {
  const dir = testTempDir('omnigate-crash-');
  const file = join(dir, 'crash.ts');
  writeFileSync(file, `
import { installCrashPolicy } from ${JSON.stringify(policy)};
import { createLogger } from ${JSON.stringify(logger)};
const log = createLogger({ level: 'info' });
installCrashPolicy(log, async () => { process.stdout.write('{"stopped":true}\\n'); });
setTimeout(() => {}, 10_000); // something keeps the process alive: only the policy ends it
${body}
`);
  return spawnSync(process.execPath, ['--import', 'tsx', file], { encoding: 'utf8', timeout: 30_000 });
}

describe('crash policy', () => {
  it('an unhandled rejection: fatal log with the stack, an orderly stop, exit 70', () => {
    const r = run(`void Promise.reject(new Error('lane never released'));`);
    expect(r.status).toBe(70);
    expect(r.stdout).toContain('"stopped":true');
    const fatal = r.stdout.split('\n').filter(Boolean).map((l) => JSON.parse(l)).find((l) => l.level === 'fatal');
    expect(fatal).toMatchObject({ err: 'lane never released', msg: 'unhandled rejection: exiting (crash-only policy)' });
    expect(fatal.stack).toMatch(/crash\.ts/);
  });

  it('an uncaught exception: exit 70 as well', () => {
    const r = run(`setTimeout(() => { throw new Error('broken invariant'); }, 10);`);
    expect(r.status).toBe(70);
    expect(r.stdout).toMatch(/uncaught exception: exiting/);
  });
});
