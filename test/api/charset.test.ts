/**
 * JSON bodies in the charset their Content-Type declares, through a whole gateway: a 1C system's
 * windows-1251 message and a KOI8-R one land in the ticket log as the Cyrillic that was sent, and
 * so do a reply and a note over /v1 (they were "not valid UTF-8"). A charset the gateway cannot
 * read is a 415 naming Content-Type and the charset; declared UTF-8 is read as before.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ADMIN, SITE_SECRET, startApiHarness, until, type ApiHarness } from './support.js';
import { encodeIn } from '../helpers/charsets.js';

let h: ApiHarness;

beforeAll(async () => {
  h = await startApiHarness();
});
afterAll(async () => h?.stop());

async function postRaw(path: string, body: Buffer, contentType: string, token: string): Promise<{ status: number; body: any }> {
  const res = await fetch(`${h.gw.httpUrl}${path}`, { method: 'POST', headers: { authorization: `Bearer ${token}`, 'content-type': contentType }, body });
  return { status: res.status, body: await res.json() };
}

/** A customer's message sent to the channel in `charset`; the ticket log's entry for it. */
async function channelMessage(messageId: string, text: string, charset: string): Promise<{ ticketId: string; entry: any }> {
  const json = JSON.stringify({ messageId, sender: { id: `${messageId}@client.ru`, name: 'Ольга Ёлкина' }, subject: 'Накладная', text });
  const res = await postRaw('/connectors/webhook/site/messages', encodeIn(json, charset), `application/json; charset=${charset}`, SITE_SECRET);
  expect(res, charset).toMatchObject({ status: 202 });
  const e = await h.gw.waitForEvent((ev) => ev.type === 'ticket.message' && (ev.entry as any)?.event?.id === `webhook:site:${messageId}`);
  const log = (await h.api(`/v1/tickets/${e.ticketId}/log`)).body.log as any[];
  return { ticketId: e.ticketId, entry: log.find((l) => l.kind === 'inbound' && l.event.id === `webhook:site:${messageId}`) };
}

describe('a JSON body in its declared charset', () => {
  it('stores a windows-1251 message from the channel as the Cyrillic that was sent', async () => {
    const { entry } = await channelMessage('cp1251-1', 'Здравствуйте! Не пришёл счёт за март, ИНН 7701234567.', 'windows-1251');
    expect(entry.event).toMatchObject({ text: 'Здравствуйте! Не пришёл счёт за март, ИНН 7701234567.', sender: { displayName: 'Ольга Ёлкина' }, conversation: { title: 'Накладная' } });
  });

  it('stores a KOI8-R message, and a windows-1251 reply and a KOI8-R note over /v1', async () => {
    const { ticketId, entry } = await channelMessage('koi8-1', 'Добрый день, касса снова не печатает чек', 'koi8-r');
    expect(entry.event.text).toBe('Добрый день, касса снова не печатает чек');

    const reply = JSON.stringify({ text: 'Ольга, счёт отправлен повторно', author: { id: 'agent-1c', name: 'Бухгалтерия' } });
    expect((await postRaw(`/v1/tickets/${ticketId}/replies`, encodeIn(reply, 'windows-1251'), 'application/json; charset=windows-1251', ADMIN)).status).toBe(202);
    await until(() => h.sent.some((s) => s.ticketId === ticketId), 'the reply at the channel');
    expect(h.sent.find((s) => s.ticketId === ticketId)).toMatchObject({ text: 'Ольга, счёт отправлен повторно' });

    const note = JSON.stringify({ text: 'Проверить настройки кассы', author: { id: 'agent-1c' } });
    expect((await postRaw(`/v1/tickets/${ticketId}/notes`, encodeIn(note, 'koi8-r'), 'application/json; charset="KOI8-R"', ADMIN)).status).toBe(201);
    const log = (await h.api(`/v1/tickets/${ticketId}/log`)).body.log as any[];
    expect(log.find((l) => l.kind === 'outbound').message.text).toBe('Ольга, счёт отправлен повторно');
    expect(log.find((l) => l.kind === 'note').text).toBe('Проверить настройки кассы');
  });

  it('refuses a charset it cannot read: 415 naming Content-Type and the charset, on /v1 and on the channel', async () => {
    const ticketId = await h.openTicket('charset-unknown');
    const body = Buffer.from(JSON.stringify({ text: 'x' }));
    const api = await postRaw(`/v1/tickets/${ticketId}/notes`, body, 'application/json; charset=x-unknown-1', ADMIN);
    expect(api).toEqual({ status: 415, body: { error: { code: 'unsupported_media_type', field: 'Content-Type', message: expect.stringMatching(/^Content-Type: charset=x-unknown-1 is not a charset this server reads/) } } });
    const channel = await postRaw('/connectors/webhook/site/messages', Buffer.from(JSON.stringify({ messageId: 'charset-unknown-2', sender: { id: 'u@client.ru' }, text: 'x' })), 'application/json; charset=x-unknown-1', SITE_SECRET);
    expect(channel).toEqual({ status: 415, body: { error: 'unsupported_media_type', field: 'Content-Type', message: expect.stringMatching(/^Content-Type: charset=x-unknown-1 is not/) } });
  });

  it('declared UTF-8 reads as before; bytes that are not UTF-8 are still refused naming the field', async () => {
    const { entry } = await channelMessage('utf8-explicit', 'Всё в порядке, спасибо', 'utf-8');
    expect(entry.event.text).toBe('Всё в порядке, спасибо');
    const ticketId = await h.openTicket('charset-utf8-bad');
    const bad = Buffer.concat([Buffer.from('{"text":"'), encodeIn('Привет', 'windows-1251'), Buffer.from('"}')]);
    const res = await postRaw(`/v1/tickets/${ticketId}/notes`, bad, 'application/json; charset=utf-8', ADMIN);
    expect(res).toEqual({ status: 400, body: { error: { code: 'invalid_request', field: 'text', message: 'text: not valid UTF-8 (bytes of another encoding?): send JSON encoded as UTF-8' } } });
  });
});
