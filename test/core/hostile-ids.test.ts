/**
 * Ids that would become NATS headers: refused by schema v1 with the field named, and — should one
 * slip past a schema — the NATS client's own refusal is recognised as permanent, not as "NATS down".
 */
import { connect } from '@nats-io/transport-node';
import { jetstream, jetstreamManager } from '@nats-io/jetstream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isRefusedByClient } from '../../src/connectors/intake.js';
import { decodeBase64Strict, jsonDepth, jsonMediaType, parseJsonBody, parseJsonBounded } from '../../src/core/json-input.js';
import { InboundEvent, describeZodError } from '../../src/core/schema.js';
import { chatMessage } from '../helpers/events.js';
import { startNats, type TestNats } from '../helpers/nats-server.js';

let nats: TestNats;
beforeAll(async () => {
  nats = await startNats();
});
afterAll(async () => nats?.stop());

describe('schema v1 refuses control characters in ids', () => {
  it.each([
    ['id', (e: any) => (e.id = 'webhook:site:a\r\nb')],
    ['platform.messageId', (e: any) => (e.platform.messageId = 'x\n')],
    ['conversation.id', (e: any) => (e.conversation.id = 'c\u0000')],
    ['sender.id', (e: any) => (e.sender.id = 's\u007f')],
  ])('%s', (field, mutate) => {
    const e = chatMessage({ chat: 'c', id: 'm' }) as any;
    mutate(e);
    const r = InboundEvent.safeParse(e);
    expect(r.success).toBe(false);
    expect(describeZodError(r.error!)).toContain(`${field}: must not contain control characters`);
  });

  it('keeps Cyrillic, emoji and punctuation', () => {
    const e = chatMessage({ chat: 'чат «Поддержка» 🙂', id: '<abc.123@почта.рф>' });
    expect(InboundEvent.safeParse(e).success).toBe(true);
  });
});

describe('the NATS client refusing a message is permanent', () => {
  it('a CR/LF Nats-Msg-Id is refused by nats.js before sending, and classified as the client refusing', async () => {
    const nc = await connect({ servers: nats.url });
    try {
      await (await jetstreamManager(nc)).streams.add({ name: 'HOSTILE', subjects: ['hostile.>'] });
      const err = await jetstream(nc).publish('hostile.x', 'x', { msgID: 'a\r\nb' }).catch((e) => e);
      expect(err).toBeInstanceOf(Error);
      expect(isRefusedByClient(err)).toBe(true);
      // NATS being unreachable is not the client's refusal: that one is retried.
      const noStream = await jetstream(nc).publish('nostream.x', 'x').catch((e) => e);
      expect(isRefusedByClient(noStream)).toBe(false);
    } finally {
      await nc.close();
    }
  });
});

describe('untrusted JSON and base64', () => {
  it('reads a body that starts with a UTF-8 byte-order mark (.NET, PowerShell, 1C); names UTF-16 for what it is', () => {
    const json = Buffer.from('{"text":"Добрый день"}');
    expect(parseJsonBody(Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), json]))).toEqual({ text: 'Добрый день' });
    const utf16 = Buffer.concat([Buffer.from([0xff, 0xfe]), Buffer.from('{"text":"x"}', 'utf16le')]);
    expect(() => parseJsonBody(utf16)).toThrow('body is UTF-16 (it starts with a UTF-16 byte-order mark): send JSON encoded as UTF-8');
    expect(() => parseJsonBody(Buffer.from('{"text":"x"}', 'utf16le'))).toThrow('body looks like UTF-16 (every other byte is zero): send JSON encoded as UTF-8');
    // A BOM inside the body is a character like any other, not skipped.
    expect(parseJsonBody(Buffer.from('{"text":"\ufeffx"}'))).toEqual({ text: '\ufeffx' });
  });

  it('takes JSON, text/plain or no Content-Type for a JSON body; names any other', () => {
    for (const fine of [undefined, '', 'application/json', 'text/json', 'Application/JSON; charset=utf-8', 'text/plain;charset=UTF-8', 'application/problem+json']) expect(jsonMediaType(fine).refusal, String(fine)).toBeUndefined();
    expect(jsonMediaType('application/x-www-form-urlencoded').refusal).toBe("Content-Type: application/x-www-form-urlencoded is not accepted: send the body as application/json (curl: -H 'content-type: application/json')");
    expect(jsonMediaType(`multipart/${'x'.repeat(300)}\u0007`).refusal!.length).toBeLessThan(200);
  });

  it('measures depth without parsing, ignoring brackets inside strings', () => {
    expect(jsonDepth('{"a":[1,{"b":"[[[[{{{{"}]}')).toBe(3);
    expect(jsonDepth('"\\"[["')).toBe(0);
    expect(() => parseJsonBounded('['.repeat(33) + ']'.repeat(33))).toThrow(/33 levels deep; at most 32/);
    expect(parseJsonBounded('['.repeat(32) + ']'.repeat(32))).toBeInstanceOf(Array);
    expect(() => parseJsonBounded('{"a":')).toThrow(/not valid JSON/);
  });

  it('decodes standard and URL-safe base64 with or without padding, and refuses the rest', () => {
    expect(decodeBase64Strict(Buffer.from('привет').toString('base64'))!.toString()).toBe('привет');
    expect(decodeBase64Strict('0L/RgNC40LLQtdGC\r\n')!.toString()).toBe('привет');
    expect(decodeBase64Strict(Buffer.from([0xfb, 0xff]).toString('base64url'))).toEqual(Buffer.from([0xfb, 0xff]));
    expect(decodeBase64Strict('QUI')!.toString()).toBe('AB');
    for (const bad of ['%%%не base64%%%', 'Q', 'QU=JD', 'QUI=A', 'a+b_']) expect(decodeBase64Strict(bad), bad).toBeNull();
  });
});
