/**
 * A JSON body in the charset its Content-Type declares: 1C's windows-1251, KOI8-R, DOS cp866 and
 * UTF-16 are read as such (they were "not valid UTF-8"); a charset no decoder here knows is named;
 * undeclared bodies are read exactly as before (UTF-8, a UTF-8 byte-order mark skipped, UTF-16 named).
 */
import { describe, expect, it } from 'vitest';
import { decodeJson } from '../../src/core/json-charset.js';
import { JsonInputError, jsonMediaType, parseJsonBody } from '../../src/core/json-input.js';
import { encodeIn as encode } from '../helpers/charsets.js';

const TEXT = 'Здравствуйте, касса не печатает чек 17, ёЁ';
const body = (text = TEXT) => `{"text":${JSON.stringify(text)},"sender":{"name":"Ирина"}}`;
const refusal = (f: () => unknown) => {
  try {
    f();
  } catch (err) {
    if (err instanceof JsonInputError) return { message: err.message, field: err.field, kind: err.kind };
    throw err;
  }
  throw new Error('expected a JsonInputError');
};

describe('jsonMediaType: the charset a JSON body is declared in', () => {
  it('gives the decoder\'s name for a known charset, quoted or not, any case', () => {
    expect(jsonMediaType('application/json; charset=windows-1251')).toEqual({ charset: 'windows-1251' });
    expect(jsonMediaType('application/json;charset="CP1251"')).toEqual({ charset: 'windows-1251' });
    expect(jsonMediaType('text/plain; Charset=KOI8-R')).toEqual({ charset: 'koi8-r' });
    expect(jsonMediaType('application/json; charset=cp866')).toEqual({ charset: 'ibm866' });
    expect(jsonMediaType('application/json; charset=utf-16le')).toEqual({ charset: 'utf-16le' });
    expect(jsonMediaType('application/json; charset=UTF-8')).toEqual({ charset: 'utf-8' });
    expect(jsonMediaType('application/json')).toEqual({});
    expect(jsonMediaType(undefined)).toEqual({});
  });

  it('refuses a charset no decoder here knows, naming Content-Type and the charset, bounded and printable', () => {
    expect(jsonMediaType('application/json; charset=klingon-1').refusal).toBe('Content-Type: charset=klingon-1 is not a charset this server reads: send JSON as UTF-8 (charset=utf-8), or in a charset such as windows-1251, koi8-r, ibm866 or utf-16le');
    expect(jsonMediaType('application/json; charset=').refusal).toMatch(/^Content-Type: charset= is not a charset/);
    // Known to the Encoding Standard, but as "replacement": it decodes nothing.
    expect(jsonMediaType('application/json; charset=iso-2022-kr').refusal).toMatch(/^Content-Type: charset=iso-2022-kr is not/);
    expect(jsonMediaType(`application/json; charset=${'x'.repeat(300)}\u0007`).refusal!.length).toBeLessThan(250);
    // The type is judged first: a form is a form whatever its charset.
    expect(jsonMediaType('application/x-www-form-urlencoded; charset=windows-1251').refusal).toMatch(/^Content-Type: application\/x-www-form-urlencoded is not accepted/);
  });
});

describe('parseJsonBody in a declared charset', () => {
  it('reads windows-1251, KOI8-R and cp866 Cyrillic', () => {
    for (const charset of ['windows-1251', 'koi8-r', 'ibm866']) {
      const raw = encode(body(), charset);
      expect(raw.length, charset).toBe(body().length); // one byte a letter: really that charset
      expect(parseJsonBody(raw, charset), charset).toEqual({ text: TEXT, sender: { name: 'Ирина' } });
    }
  });

  it('reads UTF-16 with or without its byte-order mark, either byte order', () => {
    const le = Buffer.from(body(), 'utf16le');
    const be = Buffer.from(le).swap16();
    const expected = { text: TEXT, sender: { name: 'Ирина' } };
    expect(parseJsonBody(Buffer.concat([Buffer.from([0xff, 0xfe]), le]), 'utf-16le')).toEqual(expected);
    expect(parseJsonBody(le, 'utf-16le')).toEqual(expected);
    expect(parseJsonBody(Buffer.concat([Buffer.from([0xfe, 0xff]), be]), 'utf-16be')).toEqual(expected);
    expect(parseJsonBody(be, 'utf-16be')).toEqual(expected);
    // `charset=utf-16` is utf-16le to a browser; big-endian bytes show themselves (JSON starts with ASCII).
    expect(parseJsonBody(be, 'utf-16le')).toEqual(expected);
    expect(parseJsonBody(Buffer.concat([Buffer.from([0xfe, 0xff]), be]), 'utf-16le')).toEqual(expected);
  });

  it('names the field whose bytes are not of the declared charset', () => {
    // A lone high surrogate (D800) in UTF-16LE inside sender.name.
    const raw = Buffer.concat([Buffer.from('{"text":"x","sender":{"name":"a', 'utf16le'), Buffer.from([0x00, 0xd8]), Buffer.from('"}}', 'utf16le')]);
    expect(refusal(() => parseJsonBody(raw, 'utf-16le'))).toEqual({ kind: 'text', field: 'sender.name', message: 'sender.name: not valid utf-16le (bytes of another encoding?): send it in utf-16le, as Content-Type says, or as UTF-8' });
  });

  it('a UTF-8 byte-order mark means UTF-8, whatever the header says', () => {
    const raw = Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), Buffer.from(body())]);
    expect(parseJsonBody(raw, 'windows-1251')).toEqual({ text: TEXT, sender: { name: 'Ирина' } });
  });

  it('UTF-8 under a label that lies (us-ascii, latin1, windows-1251) is read as UTF-8, not stored as mojibake', () => {
    for (const label of ['us-ascii', 'iso-8859-1', 'windows-1251', 'koi8-r']) {
      expect(parseJsonBody(Buffer.from(body()), label), label).toEqual({ text: TEXT, sender: { name: 'Ирина' } });
    }
    // Real windows-1251 is not valid UTF-8: still read as declared.
    expect(parseJsonBody(encode(body(), 'windows-1251'), 'windows-1251')).toEqual({ text: TEXT, sender: { name: 'Ирина' } });
  });

  it('UTF-16 declared as anything else, or not declared, is named as before', () => {
    const marked = Buffer.concat([Buffer.from([0xff, 0xfe]), Buffer.from('{"text":"x"}', 'utf16le')]);
    for (const charset of [undefined, 'utf-8', 'windows-1251']) {
      expect(refusal(() => parseJsonBody(marked, charset)).message, charset).toBe('body is UTF-16 (it starts with a UTF-16 byte-order mark): send JSON encoded as UTF-8');
      expect(refusal(() => parseJsonBody(Buffer.from('{"text":"x"}', 'utf16le'), charset)).message, charset).toBe('body looks like UTF-16 (every other byte is zero): send JSON encoded as UTF-8');
    }
  });

  it('declared UTF-8 behaves as undeclared: bytes of another encoding are refused naming the field', () => {
    const raw = Buffer.concat([Buffer.from('{"text":"'), encode('Привет', 'windows-1251'), Buffer.from('"}')]);
    for (const charset of [undefined, 'utf-8']) {
      expect(refusal(() => parseJsonBody(raw, charset))).toEqual({ kind: 'text', field: 'text', message: 'text: not valid UTF-8 (bytes of another encoding?): send JSON encoded as UTF-8' });
    }
    expect(parseJsonBody(raw, 'windows-1251')).toEqual({ text: 'Привет' });
  });

  it('the checks on the decoded text stay: NUL, a key twice', () => {
    expect(refusal(() => parseJsonBody(encode('{"text":"a\\u0000"}', 'windows-1251'), 'windows-1251')).field).toBe('text');
    expect(refusal(() => parseJsonBody(encode('{"текст":"а","текст":"б"}', 'koi8-r'), 'koi8-r')).field).toBe('текст');
  });

  it('windows-1252 (latin1, iso-8859-1) has its punctuation at 0x80–0x9F on every Node release', () => {
    const raw = Buffer.from([0x7b, 0x22, 0x74, 0x22, 0x3a, 0x22, 0x80, 0x92, 0x93, 0x94, 0x96, 0x99, 0x81, 0xe9, 0xff, 0x22, 0x7d]); // {"t":"…"}
    expect(parseJsonBody(raw, jsonMediaType('application/json; charset=iso-8859-1').charset)).toEqual({ t: '€’“”–™\u0081éÿ' });
    const decoded = decodeJson(Buffer.from(Array.from({ length: 256 }, (_, i) => i)), 'windows-1252');
    expect(decoded).toMatchObject({ valid: true, charset: 'windows-1252' });
    expect('text' in decoded && [...decoded.text].length).toBe(256);
  });
});
