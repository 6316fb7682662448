/** The gateway's log lines: one JSON object per line that strict parsers accept. */
import { PassThrough } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { createLogger } from '../../src/core/logger.js';

function capture(level = 'info') {
  const out = new PassThrough();
  const lines: string[] = [];
  let buffered = '';
  out.on('data', (d: Buffer) => {
    buffered += d.toString();
    const parts = buffered.split('\n');
    buffered = parts.pop()!;
    lines.push(...parts);
  });
  return { log: createLogger({ level, destination: out }), lines };
}

/** The keys of one JSON line, in order, repeats included (JSON.parse would hide them). */
function keysOf(line: string): string[] {
  return [...line.matchAll(/[{,]"([^"]+)":/g)].map((m) => m[1]!);
}

describe('log lines', () => {
  it('name each key once: a child\'s binding replaces its parent\'s of the same name (Elasticsearch refused lines with component twice)', async () => {
    const { log, lines } = capture();
    log.child({ component: 'api' }).child({ component: 'webhooks', webhook: 'helpdesk' }).child({ webhook: 'helpdesk' }).info('delivering');
    await new Promise((r) => setImmediate(r));
    const keys = keysOf(lines[0]!);
    expect(new Set(keys).size).toBe(keys.length);
    expect(JSON.parse(lines[0]!)).toMatchObject({ service: 'omnigate', component: 'webhooks', webhook: 'helpdesk', msg: 'delivering' });
  });

  it('name each key once when a call repeats a key its logger is bound to (4,930 lines had "webhook" twice)', async () => {
    const { log, lines } = capture();
    const bound = log.child({ component: 'webhooks', webhook: 'helpdesk' });
    bound.info({ webhook: 'helpdesk', attempt: 2 }, 'same value');
    bound.info({ webhook: 'crm' }, 'another value');
    await new Promise((r) => setImmediate(r));
    for (const line of lines) {
      const keys = keysOf(line);
      expect(new Set(keys).size, line).toBe(keys.length);
    }
    expect(JSON.parse(lines[0]!)).toMatchObject({ webhook: 'helpdesk', attempt: 2 });
    expect(JSON.parse(lines[1]!)).toMatchObject({ webhook: 'helpdesk', webhook_: 'crm' });
  });

  it('keep a child\'s own level for its children (a library logger quieter than the gateway), and redaction', async () => {
    const { log, lines } = capture();
    const lib = log.child({ lib: 'baileys' }, { level: 'warn' });
    lib.child({ class: 'socket' }).info('hidden');
    lib.child({ class: 'socket' }).warn('shown');
    log.child({ component: 'x' }).info({ token: 'not-for-logs' }, 'redacted');
    await new Promise((r) => setImmediate(r));
    expect(lines.map((l) => JSON.parse(l).msg)).toEqual(['shown', 'redacted']);
    expect(lines[1]).not.toContain('not-for-logs');
  });
});
