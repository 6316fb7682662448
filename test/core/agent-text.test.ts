/**
 * A reply or note must show something. Whitespace alone was refused, but zero-width and other
 * invisible characters passed (`{"text":"\u200b\u200b"}` was a 202 and reached the customer as
 * an empty-looking message): they count as whitespace, and the refusal names the field.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { NoteCommand, ReplyCommand, describeZodError } from '../../src/core/schema.js';
import { startApiHarness, type ApiHarness } from '../api/support.js';

const INVISIBLE = [
  '\u200b\u200b', // zero-width space
  '\u200c\u200d', // zero-width non-joiner, joiner
  '\u2060', // word joiner
  '\ufeff', // BOM / zero-width no-break space
  '\u00ad', // soft hyphen
  '\u200e\u200f\u202a\u202c\u2066\u2069', // bidi marks and isolates
  '\u180e', // Mongolian vowel separator
  '\u034f\ufe0f', // combining grapheme joiner, variation selector
  '\u3164\uffa0', // Hangul fillers
  '\u2800', // blank braille pattern
  '\u{e0020}\u{e007f}', // tag characters
  ' \u200b\n\t\u00a0\ufeff ', // mixed with whitespace
];

describe('AgentText', () => {
  it('refuses text made only of invisible characters, naming the field, once', () => {
    for (const text of INVISIBLE) {
      for (const schema of [ReplyCommand, NoteCommand]) {
        const r = schema.safeParse({ ticketId: 'T-1', text });
        expect(r.success, JSON.stringify(text)).toBe(false);
        expect(r.error!.issues).toHaveLength(1);
        expect(r.error!.issues[0]!.path).toEqual(['text']);
        expect(describeZodError(r.error!)).toMatch(/^text: must contain more than whitespace/);
      }
    }
  });

  it('accepts text with anything visible, invisible characters around it included', () => {
    for (const text of ['Готово', '\u200bок', '👍', '👨\u200d👩\u200d👧', '.', 'а\u00adб', '\u2060x\ufeff']) {
      expect(ReplyCommand.safeParse({ ticketId: 'T-1', text }).success, JSON.stringify(text)).toBe(true);
    }
  });
});

describe('POST /v1/tickets/:id/replies and notes', () => {
  let h: ApiHarness;
  beforeAll(async () => {
    h = await startApiHarness();
  });
  afterAll(async () => {
    await h?.stop();
  });

  it('answer 400 naming text for zero-width characters alone', async () => {
    const id = await h.openTicket('zero-width');
    for (const path of ['replies', 'notes']) {
      const res = await h.api(`/v1/tickets/${id}/${path}`, { method: 'POST', body: '{"text":"\\u200b\\u200b"}' });
      expect(res.status, path).toBe(400);
      expect(res.body.error).toMatchObject({ code: 'invalid_request', field: 'text', message: expect.stringContaining('must contain more than whitespace') });
    }
    expect(h.sent.filter((s) => s.ticketId === id)).toHaveLength(0);
  });
});
