/**
 * The gateway's own log line for an erasure carries its whole count, the SQL rows included: the
 * line written after the NATS stores once showed `"sql":{}` (the rows go after it), which reads
 * as "nothing erased in the database" to an operator keeping the log as the record of an erasure.
 */
import { Writable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import type { Bus } from '../../src/core/bus.js';
import { createLogger } from '../../src/core/logger.js';
import { Eraser, emptyCounts } from '../../src/core/erasure.js';

describe('erasure log line', () => {
  it('names the erasure id, who asked, the contact ids and every store count, SQL rows included', async () => {
    const lines: string[] = [];
    const log = createLogger({ level: 'info', destination: new Writable({ write: (c, _e, cb) => (lines.push(String(c)), cb()) }) });
    const published: string[] = [];
    const bus = { publishJson: (subject: string) => (published.push(subject), Promise.resolve({})) } as unknown as Bus;
    const eraser = new Eraser(bus, log);
    const erased = { ...emptyCounts(), tickets: 1, logEntries: 6, sql: { tickets: 1, messages: 3, contacts: 1 } };
    const event = await eraser.announce({ id: 'e-1', ticketCount: 1, erased }, { reason: 'api', requestedBy: 'dpo' }, ['c_abc']);

    expect(published).toEqual(['omni.events.audit.erasure']);
    const line = lines.map((l) => JSON.parse(l) as Record<string, unknown>).find((l) => l.erasureId === event.id);
    expect(line, lines.join('')).toBeDefined();
    expect(line).toMatchObject({ requestedBy: 'dpo', reason: 'api', contactIds: ['c_abc'], tickets: 1, erased: { logEntries: 6, sql: { tickets: 1, messages: 3, contacts: 1 } } });
  });
});
