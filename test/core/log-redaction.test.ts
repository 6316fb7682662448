import { describe, expect, it } from 'vitest';
import { addressPositions, applyRedactions } from '../../src/core/log-redaction.js';
import { LogEntry } from '../../src/core/schema.js';
import { mergeRedactions } from '../../src/core/redaction-index.js';
import { emailMessage } from '../helpers/events.js';

const at = '2026-12-07T10:00:00.000Z';

describe('redactions of an erased person in another customer\'s log', () => {
  const mail = LogEntry.parse({ kind: 'inbound', at, event: emailMessage({ messageId: '<o1@bk.ru>', from: 'olga@bk.ru', cc: ['buh@romashka.ru', 'Иван Петров <ivan.petrov@mail.ru>', 'oleg@romashka.ru'] }), match: { rule: 'new-ticket', value: 'x' } });
  const names = (text: string) => text.includes('ivan.petrov@mail.ru');

  it('finds the positions, and readers leave them out however often the redaction was appended', () => {
    const fields = addressPositions(mail, names);
    expect(fields).toEqual([{ field: 'cc', index: 1 }]);
    const redaction = LogEntry.parse({ kind: 'redaction', at, seq: 5, fields, erasureId: 'e1' });
    const log = [{ seq: 5, entry: mail }, { seq: 9, entry: redaction }, { seq: 12, entry: redaction }];
    const read = applyRedactions(log);
    expect(read.map((l) => l.seq)).toEqual([5]);
    expect(read[0]!.entry.kind === 'inbound' && read[0]!.entry.event.email?.cc).toEqual(['buh@romashka.ru', 'oleg@romashka.ru']);
    // The stored entry itself is untouched (the caller's objects are not mutated).
    expect(mail.kind === 'inbound' && mail.event.email?.cc).toHaveLength(3);
  });

  it('takes a refused copy out of a delivery entry too (the mail server named the person on a reply of someone else\'s ticket)', () => {
    const delivery = LogEntry.parse({
      kind: 'delivery', at,
      status: { v: 1, type: 'delivery.status', outboundId: 'T-1:a', ticketId: 'T-1', channel: 'email', account: 'support', status: 'sent', at,
        refusedCopies: [{ address: 'ivan.petrov@mail.ru', reason: '550 user unknown' }, { address: 'oleg@romashka.ru', reason: '451 later', temporary: true }] },
    });
    const fields = addressPositions(delivery, names);
    expect(fields).toEqual([{ field: 'refusedCopies', index: 0 }]);
    const read = applyRedactions([{ seq: 3, entry: delivery }, { seq: 4, entry: LogEntry.parse({ kind: 'redaction', at, seq: 3, fields, erasureId: 'e2' }) }]);
    expect(read).toHaveLength(1);
    expect(read[0]!.entry.kind === 'delivery' && read[0]!.entry.status.refusedCopies).toEqual([{ address: 'oleg@romashka.ru', reason: '451 later', temporary: true }]);
  });

  it('applies the ticket\'s indexed redactions to a part of the log that holds none of its redaction entries, each position once', () => {
    const fields = addressPositions(mail, names);
    const indexed = mergeRedactions([{ seq: 5, fields }], [{ seq: 5, fields }, { seq: 40, fields: [{ field: 'to', index: 0 }] }]);
    expect(indexed).toEqual([{ seq: 5, fields: [{ field: 'cc', index: 1 }] }, { seq: 40, fields: [{ field: 'to', index: 0 }] }]);
    const redaction = LogEntry.parse({ kind: 'redaction', at, seq: 5, fields, erasureId: 'e1' });
    for (const page of [[{ seq: 5, entry: mail }], [{ seq: 5, entry: mail }, { seq: 9, entry: redaction }]]) {
      const read = applyRedactions(page, indexed);
      expect(read.map((l) => l.seq)).toEqual([5]);
      expect(read[0]!.entry.kind === 'inbound' && read[0]!.entry.event.email?.cc).toEqual(['buh@romashka.ru', 'oleg@romashka.ru']);
    }
  });
});
