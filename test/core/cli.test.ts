/** The command line (util.parseArgs, strict): flags are read as declared, mistakes are usage errors. */
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { parseCommandLine } from '../../src/cli.js';

const root = new URL('../..', import.meta.url).pathname;

describe('command line', () => {
  it('reads the command, --config and the dlq flags (in any order, --flag=value too)', () => {
    expect(parseCommandLine(['start', '--config', 'a.yaml'])).toMatchObject({ command: 'start', config: 'a.yaml' });
    expect(parseCommandLine(['--config=b.yaml', 'check-config'])).toMatchObject({ command: 'check-config', config: 'b.yaml' });
    expect(parseCommandLine(['dlq', '--replay', '--source', 'router', '--since', '2026-12-01T00:00:00Z', '--limit', '5']).dlq).toEqual({
      source: 'router',
      since: '2026-12-01T00:00:00Z',
      limit: 5,
      replay: true,
    });
    expect(parseCommandLine(['dlq']).dlq).toEqual({ source: undefined, since: undefined, limit: 1000, replay: false });
    // `omnigate dlq --help` answered "Unknown option '--help'".
    for (const argv of [['dlq', '--help'], ['-h'], ['help'], ['start', '--help']]) expect(parseCommandLine(argv).help).toBe(true);
    expect(parseCommandLine(['start']).help).toBe(false);
  });

  it('rejects unknown flags, missing values, stray arguments and bad numbers or times', () => {
    expect(() => parseCommandLine(['start', '--confg', 'a.yaml'])).toThrow(/--confg/);
    expect(() => parseCommandLine(['start', '--config'])).toThrow(/--config/);
    expect(() => parseCommandLine(['start', 'extra'])).toThrow(/unexpected argument 'extra'/);
    expect(() => parseCommandLine(['start', '--replay'])).toThrow(/--replay applies to the dlq command only/);
    expect(() => parseCommandLine(['dlq', '--limit', 'ten'])).toThrow(/--limit must be a positive integer/);
    expect(() => parseCommandLine(['dlq', '--since', 'yesterday'])).toThrow(/--since must be an ISO time/);
  });

  it('exits 64 with the reason and the usage on a bad command line', async () => {
    const failed = await promisify(execFile)(process.execPath, ['--import', 'tsx', 'src/cli.ts', 'start', '--bogus'], { cwd: root }).catch((e: { code: number; stderr: string }) => e);
    expect(failed).toMatchObject({ code: 64 });
    expect((failed as { stderr: string }).stderr).toMatch(/omnigate: Unknown option '--bogus'[\s\S]*usage: omnigate start/);
  });
});
