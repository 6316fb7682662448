import { readFileSync, readdirSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { schemaDocuments } from '../../src/core/schema-export.js';
import { InboundEvent, InboundMessage, OutboundMessage } from '../../src/core/schema.js';
import { chatMessage } from '../helpers/events.js';

const dir = new URL('../../docs/schema/', import.meta.url).pathname;

describe('event schema v1', () => {
  it('docs/schema/*.json are generated from the zod definitions and up to date (npx tsx scripts/gen-schema.ts)', () => {
    const docs = schemaDocuments();
    expect(readdirSync(dir).sort()).toEqual(Object.keys(docs).map((n) => `${n}.json`).sort());
    for (const [name, doc] of Object.entries(docs)) {
      expect(JSON.parse(readFileSync(`${dir}${name}.json`, 'utf8')), name).toEqual(doc);
    }
  });

  it('rejects other schema versions and names the missing field', () => {
    const ok = chatMessage({ chat: '1' });
    expect(InboundEvent.safeParse(ok).success).toBe(true);
    expect(InboundEvent.safeParse({ ...ok, v: 2 }).success).toBe(false);
    const { sender: _drop, ...noSender } = ok;
    const r = InboundEvent.safeParse(noSender);
    expect(r.success).toBe(false);
    expect(r.error!.issues[0]!.path).toEqual(['sender']);
  });

  it('keeps Cyrillic and channel/account tokens safe for subjects', () => {
    const e = chatMessage({ chat: 'чат-1', text: 'Привет, мир' });
    expect(InboundMessage.parse(e).text).toBe('Привет, мир');
    expect(InboundEvent.safeParse({ ...e, account: 'my.account' }).success).toBe(false);
    expect(OutboundMessage.safeParse({}).success).toBe(false);
  });
});
