/**
 * Ids with characters that do not show (U+202E and the other direction controls, LRM/RLM, the
 * Arabic letter mark, zero-width characters) are refused at the edge naming the field: they made
 * one messageId or conversation look like another in log lines and the console. Names, subjects and
 * file names are cleaned of them instead (display-text.ts, media.ts), and a mail whose Message-ID
 * holds one is still taken, under a hashed id.
 */
import { describe, expect, it } from 'vitest';
import { platformId } from '../../src/connectors/email/ids.js';
import { isMailbox } from '../../src/core/mail-address.js';
import { InboundEvent, LinkCommand, NoteCommand, ReplyCommand, describeZodError } from '../../src/core/schema.js';
import { chatMessage } from '../helpers/events.js';
import { webhookRig } from '../connectors/webhook/rig.js';

const HIDDEN = ['\u202e', '\u2066', '\u2069', '\u200e', '\u200f', '\u061c', '\u200b', '\u200d', '\u2060', '\ufeff'];
const hex = (c: string) => `U+${c.codePointAt(0)!.toString(16).toUpperCase().padStart(4, '0')}`;

function webhook() {
  const { c, post: postBytes, letters, published } = webhookRig();
  const post = async (body: unknown) => {
    await c.start();
    return postBytes(Buffer.from(JSON.stringify(body)));
  };
  return { post, letters, published: published as any[] };
}

const good = () => ({ messageId: 'm-1', conversationId: 'order-42', sender: { id: 'olga-7', name: 'Ольга', email: 'olga@client.ru' }, text: 'Заказ не пришёл' });

describe('webhook intake refuses ids with invisible characters, naming the field', () => {
  it.each([
    ['messageId', (b: any, c: string) => (b.messageId = `m-1${c}exe.txt`)],
    ['conversationId', (b: any, c: string) => (b.conversationId = `order${c}-42`)],
    ['sender.id', (b: any, c: string) => (b.sender.id = `${c}olga-7`)],
    ['sender.email', (b: any, c: string) => (b.sender.email = `olga${c}@client.ru`)],
    ['replyTo', (b: any, c: string) => (b.replyTo = `m-0${c}`)],
  ])('%s', async (field, mutate) => {
    for (const c of HIDDEN) {
      const { post, letters, published } = webhook();
      const body = good();
      mutate(body, c);
      const res = await post(body);
      expect(res.status, `${field} ${hex(c)}`).toBe(400);
      expect(res.body).toMatchObject({ error: 'invalid_body', field, message: expect.stringMatching(new RegExp(`^${field.replace('.', '\\.')}: must not contain .*invisible formatting characters`)) });
      expect(letters).toHaveLength(1);
      expect(published).toEqual([]);
    }
  });

  it('takes a name, subject and file name holding one, cleaned of direction controls where they are shown', async () => {
    const { post, published } = webhook();
    const res = await post({ ...good(), subject: 'Счёт \u202eпросрочен', sender: { id: 'olga-7', name: '\u202eОльга\u200f' }, attachments: [{ name: 'invoice\u202efdp.exe', contentBase64: 'QQ==' }] });
    expect(res.status).toBe(202);
    const event = InboundEvent.parse({ ...published[0], v: 1, channel: 'webhook', account: 'site', receivedAt: new Date().toISOString() });
    expect(event.type === 'message.inbound' && event.sender.displayName).toBe('Ольга\u200f');
    expect(event.type === 'message.inbound' && event.subject).toBe('Счёт просрочен');
  });
});

describe('the event schema and commands refuse them too (a publisher on the bus, the REST API)', () => {
  it.each([
    ['id', (e: any) => (e.id = 'webhook:site:m\u202e1')],
    ['platform.messageId', (e: any) => (e.platform.messageId = 'm\u200b')],
    ['conversation.id', (e: any) => (e.conversation.id = '\u2066c\u2069')],
    ['sender.id', (e: any) => (e.sender.id = 's\u061c')],
  ])('event %s', (field, mutate) => {
    const e = chatMessage({ chat: 'c', id: 'm' }) as any;
    mutate(e);
    const r = InboundEvent.safeParse(e);
    expect(r.success).toBe(false);
    expect(describeZodError(r.error!)).toContain(`${field}: must not contain control characters (CR, LF, NUL, tab...) or invisible formatting characters`);
  });

  it('command author.id, idempotencyKey, link externalId', () => {
    const reply = ReplyCommand.safeParse({ ticketId: 'T-1', text: 'Добрый день', author: { id: 'anna\u202e' } });
    expect(describeZodError(reply.error!)).toContain('author.id: must not contain invisible formatting characters');
    const note = NoteCommand.safeParse({ ticketId: 'T-1', text: 'x', idempotencyKey: 'k\u200b' });
    expect(describeZodError(note.error!)).toContain('idempotencyKey: must not contain invisible formatting characters');
    const link = LinkCommand.safeParse({ ticketId: 'T-1', system: 'zammad', externalId: '12\u202e34' });
    expect(describeZodError(link.error!)).toContain('externalId: must not contain invisible formatting characters');
    expect(ReplyCommand.safeParse({ ticketId: 'T-1', text: 'x', author: { id: 'анна 🙂' }, to: ['ivan\u202e@client.ru'] }).error?.issues[0]?.path).toEqual(['to', 0]);
  });

  it('keeps Cyrillic, emoji, punctuation and a right-to-left script in ids', () => {
    expect(InboundEvent.safeParse(chatMessage({ chat: 'чат «Поддержка» 🙂', id: '<abc.123@почта.рф>' })).success).toBe(true);
    expect(InboundEvent.safeParse(chatMessage({ chat: 'שלום-42', id: 'مرحبا' })).success).toBe(true);
    expect(isMailbox('ivan@почта.рф')).toBe(true);
    for (const c of HIDDEN) expect(isMailbox(`ivan${c}@client.ru`), hex(c)).toBe(false);
  });
});

describe('a mail whose Message-ID holds one', () => {
  it('is still taken, its platform id hashed', () => {
    const id = platformId('support@firm.ru', '<abc\u202egpj.exe@client.ru>', { from: 'ivan@client.ru', headers: 'x' });
    expect(id).toMatch(/^support@firm\.ru:sha256\.[0-9a-f]{64}#[0-9a-f]{12}$/);
    expect(platformId('support@firm.ru', '<abc@client.ru>', { from: 'ivan@client.ru', headers: 'x' })).toMatch(/^support@firm\.ru:abc@client\.ru#/);
  });
});
