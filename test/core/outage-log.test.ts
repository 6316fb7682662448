/**
 * A NATS or JetStream outage failing every command: one error line when it begins, a count at
 * warn once a minute while it lasts, one line when commands succeed again (outage-log.ts; an
 * outside trial logged 94 `command failed` lines at error in a few seconds).
 */
import { describe, expect, it } from 'vitest';
import { OutageLog } from '../../src/core/outage-log.js';
import type { Logger } from '../../src/core/logger.js';

function recorder() {
  const lines: Array<{ level: string; fields: Record<string, unknown>; msg: string }> = [];
  const at = (level: string) => (fields: Record<string, unknown>, msg: string) => lines.push({ level, fields, msg });
  return { lines, log: { error: at('error'), warn: at('warn'), info: at('info') } as unknown as Logger };
}

describe('OutageLog', () => {
  it('one error line, then a warn count once a minute, then a line when it is over', () => {
    const { lines, log } = recorder();
    let t = 0;
    const o = new OutageLog(log, 'command', 60_000, () => t);
    for (let i = 0; i < 94; i++) {
      t = i * 50;
      o.failed({ err: 'jetstream is not enabled', subject: 'omni.cmd.reply' });
    }
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatchObject({ level: 'error', msg: 'command failed', fields: { err: 'jetstream is not enabled' } });
    t = 61_000;
    o.failed({ err: 'jetstream is not enabled' });
    expect(lines).toHaveLength(2);
    expect(lines[1]).toMatchObject({ level: 'warn', fields: { failures: 94 } });
    o.succeeded();
    expect(lines[2]).toMatchObject({ level: 'warn', fields: { failures: 95, unreported: 0 } });
    o.succeeded(); // nothing going on: no line
    expect(lines).toHaveLength(3);
    o.failed({ err: 'timeout' }); // the next outage begins with an error line again
    expect(lines[3]).toMatchObject({ level: 'error', msg: 'command failed' });
  });
});
