/**
 * Who a web form's message is from, through the real HTTP path (an outside trial of ticket
 * identity): a sender the site marks unverified (per account, `senderIds: unverified`, or per
 * message, `sender.verified: false`) opens a conversation of its own — typing a customer's address
 * as `sender.id` or `conversationId` joined her open ticket, and an edit of her message was taken;
 * ids are keys in their normal form ("OLGA@client.ru " opened a second ticket), while a
 * conversation opened under the form as written is still found by it; and a web site's token
 * scoped to attachments downloads its replies' files and nothing else (403 naming the route).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/core/config.js';
import { ConfigError } from '../../src/core/config-error.js';
import { chatMessage, publishEvent } from '../helpers/events.js';
import { writeConfig } from '../helpers/process.js';
import { ADMIN, READER, SITE_SECRET, post, startApiHarness, until, type ApiHarness } from './support.js';

const FORM_SECRET = 'open-form-secret-0123456789';
const FILES = 'site-files-token-0123456789';

let h: ApiHarness;

beforeAll(async () => {
  h = await startApiHarness(
    { api: { tokens: [{ name: 'helpdesk', token: ADMIN }, { name: 'dashboards', token: READER, readOnly: true }, { name: 'site-files', token: FILES, scope: 'attachments' }] } },
    { moreConnectors: [{ type: 'webhook', account: 'form', secret: FORM_SECRET, senderIds: 'unverified' }] },
  );
});
afterAll(async () => h?.stop());

async function postForm(account: string, body: Record<string, unknown>): Promise<{ status: number; body: any }> {
  const res = await fetch(`${h.gw.httpUrl}/connectors/webhook/${account}/messages`, {
    method: 'POST',
    headers: { authorization: `Bearer ${account === 'form' ? FORM_SECRET : SITE_SECRET}`, 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });
  return { status: res.status, body: await res.json() };
}

/** Posts a message and returns the ticket it went to. */
async function ticketOf(account: string, body: Record<string, unknown>): Promise<{ ticketId: string; entry: any }> {
  const res = await postForm(account, body);
  expect(res.status, JSON.stringify(res.body)).toBe(202);
  const e = await h.gw.waitForEvent((ev) => ev.type === 'ticket.message' && (ev.entry as any)?.event?.id === `webhook:${account}:${body.messageId as string}`);
  return { ticketId: e.ticketId, entry: (e.entry as any).event };
}

describe('unverified senders', () => {
  it('on a senderIds: unverified account, a typed address never joins, edits or continues another sender\'s conversation', async () => {
    const olga = await ticketOf('form', { messageId: 'uv-olga-1', sender: { id: 'olga@client.ru', name: 'Ольга', email: 'olga@client.ru' }, text: 'Не проходит оплата' });
    // Her typed address is a contact detail, not a key.
    expect(olga.entry.sender).toMatchObject({ id: 'unverified:uv-olga-1', handles: { email: 'olga@client.ru', claimedId: 'olga@client.ru' } });
    expect(olga.entry.conversation.id).toBe('unverified:uv-olga-1');

    const stranger = await ticketOf('form', { messageId: 'uv-eve-1', sender: { id: 'olga@client.ru', email: 'olga@client.ru' }, text: 'Покажите мой заказ' });
    expect(stranger.ticketId).not.toBe(olga.ticketId);

    const viaConversation = await postForm('form', { messageId: 'uv-eve-2', conversationId: 'olga@client.ru', sender: { id: 'eve' }, text: 'x' });
    expect(viaConversation).toMatchObject({ status: 400, body: { error: 'invalid_body', field: 'conversationId' } });

    for (const type of ['edit', 'delete']) {
      const change = await postForm('form', { type, messageId: `uv-eve-${type}`, targetMessageId: 'uv-olga-1', sender: { id: 'olga@client.ru' }, ...(type === 'edit' ? { text: 'отмена' } : {}) });
      expect(change, type).toMatchObject({ status: 400, body: { error: 'invalid_body', field: 'sender.verified' } });
    }
    // The site cannot vouch past the operator's setting.
    const vouched = await postForm('form', { messageId: 'uv-eve-3', sender: { id: 'olga@client.ru', verified: true }, text: 'x' });
    expect(vouched).toMatchObject({ status: 400, body: { field: 'sender.verified' } });
    // Her ticket holds her message only.
    const log = (await h.api(`/v1/tickets/${olga.ticketId}`)).body.log;
    expect(log.map((l: any) => l.event?.id)).toEqual(['webhook:form:uv-olga-1']);
  });

  it('sender.verified: false on an authenticated account opens a ticket of its own, beside the customer\'s', async () => {
    const olga = await ticketOf('site', { messageId: 'pv-olga-1', sender: { id: 'acct-olga', email: 'olga@client.ru' }, text: 'Вопрос' });
    const typed = await ticketOf('site', { messageId: 'pv-eve-1', sender: { id: 'acct-olga', email: 'olga@client.ru', verified: false }, text: 'Вопрос' });
    expect(typed.ticketId).not.toBe(olga.ticketId);
    expect(typed.entry.sender.id).toBe('unverified:pv-eve-1');
  });

  it('refuses the gateway\'s own prefix in an authenticated id, naming the field', async () => {
    const res = await postForm('site', { messageId: 'pv-prefix', sender: { id: 'unverified:pv-olga-1' }, text: 'x' });
    expect(res).toMatchObject({ status: 400, body: { error: 'invalid_body', field: 'sender.id' } });
  });
});

describe('normal forms of ids', () => {
  it('trims ids and compares an address case-insensitively; other ids keep their case', async () => {
    const ivan = await ticketOf('site', { messageId: 'nf-ivan-1', sender: { id: 'ivan@client.ru', email: 'ivan@client.ru' }, text: 'Первое' });
    const again = await ticketOf('site', { messageId: 'nf-ivan-2', sender: { id: ' IVAN@Client.RU ' }, text: 'Второе' });
    expect(again.ticketId).toBe(ivan.ticketId);
    expect(again.entry.conversation).toMatchObject({ id: 'ivan@client.ru', writtenId: ' IVAN@Client.RU ' });
    expect(again.entry.sender.id).toBe('ivan@client.ru');

    const account = await ticketOf('site', { messageId: 'nf-acc-1', sender: { id: 'Acc-7' }, text: 'x' });
    expect((await ticketOf('site', { messageId: 'nf-acc-2', sender: { id: 'Acc-7\u0020' }, text: 'x' })).ticketId).toBe(account.ticketId);
    expect((await ticketOf('site', { messageId: 'nf-acc-3', sender: { id: 'acc-7' }, text: 'x' })).ticketId).not.toBe(account.ticketId);

    const blank = await postForm('site', { messageId: 'nf-blank', sender: { id: 'x' }, conversationId: '   ', text: 'x' });
    expect(blank).toMatchObject({ status: 400, body: { field: 'conversationId' } });
  });

  it('still finds a conversation opened under the id as written before, and takes its edits', async () => {
    // As the connector published it before ids were normalised.
    await publishEvent(h.gw.nc, chatMessage({ chat: 'PETR@client.ru ', from: 'PETR@client.ru ', id: 'nf-legacy-1' }));
    const legacy = await h.gw.waitForEvent((ev) => ev.type === 'ticket.message' && (ev.entry as any)?.event?.id === 'webhook:site:nf-legacy-1');
    const next = await ticketOf('site', { messageId: 'nf-legacy-2', sender: { id: 'PETR@client.ru ' }, text: 'Продолжение' });
    expect(next.ticketId).toBe(legacy.ticketId);
    expect((await postForm('site', { type: 'edit', messageId: 'nf-legacy-edit', targetMessageId: 'nf-legacy-1', sender: { id: 'PETR@client.ru ' }, text: 'Исправлено' })).status).toBe(202);
    await until(async () => (await h.gw.gateway.router!.store.readLog(legacy.ticketId)).some((l) => l.entry.kind === 'edited'), 'the edit in the legacy ticket');
  });
});

describe('a token scoped to attachments', () => {
  it('downloads a reply\'s file and is refused 403, naming the route, everywhere else', async () => {
    const id = await h.openTicket('scope-1');
    const replied = await h.api(`/v1/tickets/${id}/replies`, post({ text: 'Счёт во вложении', attachments: [{ name: 'счёт.txt', mimeType: 'text/plain', contentBase64: Buffer.from('сумма 100').toString('base64') }] }));
    expect(replied.status).toBeLessThan(300);
    await until(() => h.sent.some((s) => s.ticketId === id), 'the reply at the channel');
    const [file] = h.sent.find((s) => s.ticketId === id)!.attachments;
    const got = await fetch(`${h.gw.httpUrl}/v1/attachments/${file.ref}`, { headers: { authorization: `Bearer ${FILES}` } });
    expect(got.status).toBe(200);
    expect(Buffer.from(await got.arrayBuffer()).toString('utf8')).toBe('сумма 100');

    const refused: Array<[string, RequestInit, string]> = [
      ['/v1/tickets', {}, 'GET /v1/tickets'],
      [`/v1/tickets/${id}`, {}, 'GET /v1/tickets/:id'],
      ['/v1/search?q=x', {}, 'GET /v1/search'],
      ['/v1/session', {}, 'GET /v1/session'],
      [`/v1/tickets/${id}/notes`, post({ text: 'x' }), 'POST /v1/tickets/:id/notes'],
      ['/v1/attachments?name=a.txt', { method: 'POST', body: 'x' }, 'POST /v1/attachments'],
    ];
    for (const [path, init, route] of refused) {
      const res = await h.api(path, { ...init, token: FILES });
      expect(res.status, path).toBe(403);
      expect(res.body.error.code, path).toBe('forbidden');
      expect(res.body.error.message, path).toContain(`not ${route}`);
    }
    // Nothing was written by the refused note.
    expect((await h.api(`/v1/tickets/${id}`)).body.log.some((l: any) => l.kind === 'note')).toBe(false);
  });

  it('is refused in config together with admin, naming api.tokens[].scope', () => {
    const err = (() => {
      try {
        loadConfig(writeConfig({ api: { tokens: [{ name: 'site', token: FILES, admin: true, scope: 'attachments' }] } }), {});
      } catch (e) {
        return e as ConfigError;
      }
      throw new Error('accepted');
    })();
    expect(err.key).toBe('api.tokens[0].scope');
    expect(err.message).toContain('cannot be both admin and scope attachments');
  });
});
