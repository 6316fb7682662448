/**
 * The shipped alert rules (deploy/observability/alerts.yml) checked and unit-tested by promtool on
 * series made to fire and series made not to (deploy/observability/tests/alerts.test.yml).
 * promtool comes with Debian's `prometheus` package, which .ci/run installs.
 */
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';

const run = promisify(execFile);
const DIR = join(import.meta.dirname, '../../deploy/observability');
const PROMTOOL = ['/usr/bin/promtool', '/usr/local/bin/promtool'].find((p) => existsSync(p));
if (!PROMTOOL) console.warn('alert rule tests skipped: promtool is missing (apt-get install prometheus; .ci/run installs it)');

describe.skipIf(!PROMTOOL)('alert rules (promtool)', () => {
  it('are valid rules', async () => {
    const { stdout } = await run(PROMTOOL!, ['check', 'rules', join(DIR, 'alerts.yml')]);
    expect(stdout).toMatch(/SUCCESS: 12 rules found/);
  });

  it('fire on the series made to fire and stay silent on the others', async () => {
    const r = await run(PROMTOOL!, ['test', 'rules', join(DIR, 'tests/alerts.test.yml')]).catch((err: { stdout?: string; stderr?: string }) => {
      throw new Error(`promtool test rules failed:\n${err.stdout ?? ''}${err.stderr ?? ''}`);
    });
    expect(r.stdout).toContain('SUCCESS');
  });
});
