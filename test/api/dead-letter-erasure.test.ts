/**
 * A person whose every post was refused: the webhook intake parks the whole body (name, email,
 * phone, passport number) in OMNI_DLQ, and the read model has no contact for them, so
 * `POST /v1/contacts/{id}/erase` cannot reach them. Here: a read-only token sees why a letter was
 * parked but not its payload; an admin erases the person by their identifiers
 * (`POST /v1/identities/erase`, the contact erasure's own scan of the dead letters) or one letter
 * by its sequence (`DELETE /v1/dead-letters/{seq}`); nothing of them is left in any stream.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ADMIN, READER, SITE_SECRET, post, startApiHarness, until, type ApiHarness } from './support.js';
import { dumpStreams, findIn } from '../helpers/store-dump.js';
import { elideQuoted } from '../../src/console/dead-letters.js';
import { chatMessage, publishEvent } from '../helpers/events.js';
import type { InboundMessage } from '../../src/core/schema.js';

const DPO = 'dpo-token-0123456789abcdef-dlq';

let h: ApiHarness;
beforeAll(async () => {
  h = await startApiHarness({
    api: { tokens: [{ name: 'helpdesk', token: ADMIN }, { name: 'dashboards', token: READER, readOnly: true }, { name: 'dpo', token: DPO, admin: true }] },
  });
}, 120_000);
afterAll(async () => h?.stop());

/** Posts a body the intake refuses (a misspelt `priority`); answers the sequence of the letter it parked. */
async function refusedPost(messageId: string, sender: Record<string, string>, text: string, encode = JSON.stringify): Promise<number> {
  const res = await fetch(`${h.gw.httpUrl}/connectors/webhook/site/messages`, {
    method: 'POST',
    headers: { authorization: `Bearer ${SITE_SECRET}` },
    body: encode({ messageId, sender, text, prioirty: 'high' }),
  });
  expect(res.status).toBe(400);
  let seq = 0;
  await until(async () => {
    const { letters } = (await h.api('/v1/dead-letters?limit=500')).body as { letters: Array<{ seq: number }> };
    for (const l of letters) {
      const one = await h.api(`/v1/dead-letters/${l.seq}`);
      if (String(one.body.payload).includes(messageId)) seq = l.seq;
    }
    return seq > 0;
  }, `the letter of ${messageId}`);
  return seq;
}

describe('dead letters holding a person the read model does not know', () => {
  it('hides the payload from read-only tokens and erases the person by identifiers, admin only', async () => {
    const seq = await refusedPost(
      'dlqonly-1',
      { id: 'dlq-only-person', name: 'Ирина Отказова', email: 'irina.refused@example.ru', phone: '+7 903 777-66-55' },
      'Паспорт 4510 987654, прошу вернуть деньги',
    );
    expect((await h.api('/v1/contacts?handle=dlq-only-person')).body.contacts).toEqual([]);

    // Read-only: metadata and reason, not the payload (before: the whole body, passport and all).
    const seen = await h.api(`/v1/dead-letters/${seq}`, { token: READER });
    expect(seen.status).toBe(200);
    expect(seen.body).toMatchObject({ seq, source: expect.any(String), reason: expect.any(String), payloadWithheld: expect.stringContaining('read-only') });
    expect(seen.body).not.toHaveProperty('payload');
    expect(seen.body).not.toHaveProperty('meta');
    expect(JSON.stringify(seen.body)).not.toMatch(/Отказова|irina\.refused|4510/);
    // A refusal that quotes what was sent shows it to writers, not to read-only tokens.
    expect(elideQuoted('type: unknown value "Ирина Смирнова +79037776655"; expected one of "message"')).toBe('type: unknown value "…"; expected one of "…"');
    const listed = (await h.api('/v1/dead-letters?limit=500', { token: READER })).body.letters as Array<{ reason: string }>;
    for (const l of listed) expect(l.reason).not.toMatch(/"[^"…]+"/);
    // A token that may write (and replay) reads it whole.
    expect((await h.api(`/v1/dead-letters/${seq}`)).body.payload).toContain('Отказова');

    // Admin only; the body is checked before anything is erased, naming the field.
    const body = { identities: ['dlq-only-person', 'irina.refused@example.ru', '+7 903 777-66-55'] };
    expect((await h.api('/v1/identities/erase', post(body, {}, READER))).body.error.code).toBe('forbidden');
    expect((await h.api('/v1/identities/erase', post(body))).body.error).toMatchObject({ code: 'forbidden', message: expect.stringContaining('not an admin token') });
    expect((await h.api('/v1/identities/erase', post({ identities: [] }, {}, DPO))).body.error).toMatchObject({ code: 'invalid_request', field: 'identities' });
    expect((await h.api('/v1/identities/erase', post({ identities: ['ok-person', ' '] }, {}, DPO))).body.error).toMatchObject({ code: 'invalid_request', field: 'identities.1' });
    expect((await h.api('/v1/identities/erase', post({ identitis: ['dlq-only-person'] }, {}, DPO))).body.error).toMatchObject({ code: 'invalid_request', field: 'identitis' });
    // A person the read model knows is erased by their contact (their tickets too), not here.
    await h.openTicket('known-1', 'known-person@example.ru');
    await h.gw.gateway.readModel!.caughtUp(10_000);
    const known = await h.api('/v1/identities/erase', post({ identities: ['dlq-only-person', 'known-person@example.ru'] }, {}, DPO));
    expect(known.status).toBe(400);
    expect(known.body.error).toMatchObject({ code: 'invalid_request', field: 'identities.1', message: expect.stringMatching(/belongs to contact .*POST \/v1\/contacts\/.+\/erase/) });
    expect((await h.api(`/v1/dead-letters/${seq}`)).status).toBe(200);

    // Someone else's letter that holds an identifier inside a longer text: an id that is not an
    // address or a phone number is matched only as a whole value, so this one stays.
    await refusedPost('dlqother-1', { id: 'other-person-7' }, 'Передайте dlq-only-person-team, пожалуйста');
    const erased = await h.api('/v1/identities/erase', post(body, {}, DPO));
    expect(erased.status).toBe(200);
    expect(erased.body.erased.deadLetters).toBeGreaterThanOrEqual(1);
    expect((await h.api(`/v1/dead-letters/${seq}`)).status).toBe(404);
    const after = await dumpStreams(h.gw.nc);
    for (const needle of ['Отказова', 'irina.refused@example.ru', '9037776655', '903 777-66-55', '4510 987654', '"dlq-only-person"']) expect(findIn(after, needle), needle).toEqual([]);
    expect(findIn(after, 'known-person@example.ru').length).toBeGreaterThan(0);
    expect(findIn(after, 'other-person-7').length).toBeGreaterThan(0);
    const audit = await h.gw.waitForStreamMessage('OMNI_EVENTS', 'omni.events.audit.erasure', (m: any) => m.id === erased.body.erasureId);
    expect(audit).toMatchObject({ requestedBy: 'dpo', ticketCount: 0 });
  }, 120_000);

  it('understands the Russian domestic format 8 9xx…: contacts are found by it, and an erasure by it is refused or done, never a no-op', async () => {
    // A Telegram contact card as the customer's phone book has it, and a WhatsApp sender (+7 from the JID).
    const card: InboundMessage = { ...chatMessage({ channel: 'telegram', account: 'bot', chat: '7001', from: '7001', text: 'Мой номер' }), parts: [{ type: 'contact', name: 'Иван', phone: '89161110001', userId: '7001' }] };
    const wa = chatMessage({ channel: 'whatsapp', account: 'wa', chat: '79161110002@s.whatsapp.net', from: '79161110002@s.whatsapp.net', text: 'Здравствуйте' });
    wa.sender.handles = { jid: '79161110002@s.whatsapp.net', phone: '+79161110002' };
    for (const e of [card, wa]) {
      await publishEvent(h.gw.nc, e);
      await h.gw.waitForEvent((ev) => ev.type === 'ticket.message' && (ev.entry as { event?: { id: string } })?.event?.id === e.id);
    }
    await h.gw.gateway.readModel!.caughtUp(10_000);

    const byPhone = async (phone: string) => (await h.api(`/v1/contacts?phone=${encodeURIComponent(phone)}`)).body.contacts as Array<{ id: string; identities: unknown[] }>;
    const ivan = await byPhone('+7 916 111-00-01');
    expect(ivan).toHaveLength(1);
    expect(ivan[0]!.identities).toContainEqual(expect.objectContaining({ kind: 'phone', value: '+79161110001', proof: 'contact_card' }));
    for (const written of ['89161110001', '8 916 111-00-01', '8 (916) 111-00-01', '79161110001']) expect((await byPhone(written)).map((c) => c.id), written).toEqual([ivan[0]!.id]);
    // Ten digits without 8 or +7 are looked up both ways; fullwidth digits and an extension are read too (outside trial).
    for (const written of ['(916) 111-00-01', '9161110001', '８９１６１１１０００１', '+7 916 111-00-01 доб. 123', '8 916 111-00-01 ext. 12']) expect((await byPhone(written)).map((c) => c.id), written).toEqual([ivan[0]!.id]);
    // The ticket list's contact filter reads it the same way.
    const tickets = (await h.api(`/v1/tickets?contact=${encodeURIComponent('8 916 111-00-01')}`)).body.tickets as Array<{ id: string }>;
    expect(tickets).toHaveLength(1);

    // A person the read model knows: refused, naming their contact (before: 200, every count 0).
    const known = await h.api('/v1/identities/erase', post({ identities: ['8 916 111-00-02'] }, {}, DPO));
    expect(known.status).toBe(400);
    const whatsapp = await byPhone('+79161110002');
    expect(known.body.error).toMatchObject({ code: 'invalid_request', field: 'identities.0', message: expect.stringContaining(`belongs to contact ${whatsapp[0]!.id}`) });

    // Someone only dead letters hold, their number written +7…: erased by the 8… form.
    const seq = await refusedPost('dlq-8format-1', { id: 'dlq-8format-person', name: 'Анна Восьмёркина', phone: '+79037771122' }, 'Перезвоните на +79037771122');
    const erased = await h.api('/v1/identities/erase', post({ identities: ['8 903 777-11-22'] }, {}, DPO));
    expect(erased.status).toBe(200);
    expect(erased.body.erased.deadLetters).toBeGreaterThanOrEqual(1);
    expect((await h.api(`/v1/dead-letters/${seq}`)).status).toBe(404);
    const after = await dumpStreams(h.gw.nc);
    for (const needle of ['Восьмёркина', '9037771122']) expect(findIn(after, needle), needle).toEqual([]);
  }, 120_000);

  it('refuses to erase ten digits without a country code, naming the field; reads an extension and fullwidth digits (outside trial)', async () => {
    const seq = await refusedPost('dlq-ten-1', { id: 'dlq-ten-person', name: 'Олег Десятков', phone: '+7 916 555-44-33' }, 'Мой номер +7 916 555-44-33 доб. 21');
    // "(916) 555-44-33" is +7 916 555-44-33 or a whole number of another country: asked, not guessed.
    for (const written of ['(916) 555-44-33', '916-555-44-33', '９１６５５５４４３３', '916 555 44 33 доб. 21']) {
      const refused = await h.api('/v1/identities/erase', post({ identities: ['dlq-ten-person', written] }, {}, DPO));
      expect(refused.status, written).toBe(400);
      expect(refused.body.error, written).toMatchObject({ code: 'invalid_request', field: 'identities.1', message: expect.stringContaining('write it with its country code, e.g. "+7 916 555-44-33"') });
    }
    expect((await h.api(`/v1/dead-letters/${seq}`)).status).toBe(200);
    // With its country code and an extension: the number is erased, the extension is no part of it.
    const erased = await h.api('/v1/identities/erase', post({ identities: ['+7 (916) 555-44-33 доб. 21'] }, {}, DPO));
    expect(erased.status).toBe(200);
    expect((await h.api(`/v1/dead-letters/${seq}`)).status).toBe(404);
    const after = await dumpStreams(h.gw.nc);
    for (const needle of ['Десятков', '9165554433', '916 555-44-33']) expect(findIn(after, needle), needle).toEqual([]);

    // Fullwidth digits, in the request and in the customer's text.
    const wide = await refusedPost('dlq-wide-1', { id: 'dlq-wide-1' }, 'Звоните ８ ９０３ ２２２-３３-４４');
    const narrow = await refusedPost('dlq-wide-2', { id: 'dlq-wide-2' }, 'Звоните +7 903 222-33-44');
    expect((await h.api('/v1/identities/erase', post({ identities: ['＋７ ９０３ ２２２-３３-４４'] }, {}, DPO))).status).toBe(200);
    for (const s of [wide, narrow]) expect((await h.api(`/v1/dead-letters/${s}`)).status, String(s)).toBe(404);

    // A Go client escapes "<" and ">" as \u003c and \u003e: the address between them is still found.
    const goStyle = (v: unknown) => JSON.stringify(v).replace(/</g, '\\u003c').replace(/>/g, '\\u003e');
    const escaped = await refusedPost('dlq-go-1', { id: 'dlq-go-1' }, 'Пишите: Олег <oleg.go@mail.ru>', goStyle);
    expect((await h.api('/v1/identities/erase', post({ identities: ['oleg.go@mail.ru'] }, {}, DPO))).status).toBe(200);
    expect((await h.api(`/v1/dead-letters/${escaped}`)).status).toBe(404);

    // Bare digits are taken as written: a ten-digit platform id (Telegram's) of someone nobody knows is erased.
    const byId = await refusedPost('dlq-ten-id', { id: '6123456789' }, 'Здравствуйте');
    expect((await h.api('/v1/identities/erase', post({ identities: ['6123456789'] }, {}, DPO))).status).toBe(200);
    expect((await h.api(`/v1/dead-letters/${byId}`)).status).toBe(404);
  }, 120_000);

  it('erases a phone written any way as a whole number, never the same digits inside another customer\'s number', async () => {
    const written = ['8 (916) 444-55-66', '+7 916 444 55 66', '8-916-4445566', '+7(916)4445566', 'звоните 89164445566.'];
    const seqs: number[] = [];
    for (const [i, text] of written.entries()) seqs.push(await refusedPost(`dlq-phone-any-${i}`, { id: `dlq-phone-any-${i}` }, `Мой номер ${text}`));
    // Another customer: a loyalty card number holding the same eleven digits, and a longer number.
    const card = await refusedPost('dlq-phone-card', { id: 'card-owner' }, 'Номер карты лояльности 4891644455661234, не начислились баллы');
    const longer = await refusedPost('dlq-phone-longer', { id: 'longer-owner' }, 'Счёт 789164445566');
    const erased = await h.api('/v1/identities/erase', post({ identities: ['8 916 444 55 66'] }, {}, DPO));
    expect(erased.status).toBe(200);
    for (const seq of seqs) expect((await h.api(`/v1/dead-letters/${seq}`)).status, String(seq)).toBe(404);
    for (const seq of [card, longer]) expect((await h.api(`/v1/dead-letters/${seq}`)).status, String(seq)).toBe(200);
  }, 120_000);

  it('DELETE /v1/dead-letters/{seq} erases one letter, admin only', async () => {
    const seq = await refusedPost('dlqonly-2', { id: 'dlq-delete-person', name: 'Пётр Удаляев' }, 'Мой СНИЛС 112-233-445 95');
    const del = (token: string | null, s: string | number = seq) => h.api(`/v1/dead-letters/${s}`, { method: 'DELETE', token });
    expect((await del(READER)).status).toBe(403);
    expect((await del(ADMIN)).body.error).toMatchObject({ code: 'forbidden', message: expect.stringContaining('not an admin token') });
    expect((await del(null)).status).toBe(401);
    expect((await del(DPO, 'abc')).body.error).toMatchObject({ code: 'invalid_request', field: 'seq' });
    expect((await h.api(`/v1/dead-letters/${seq}`)).status).toBe(200);

    const since = new Date().toISOString();
    const gone = await del(DPO);
    expect(gone.status).toBe(200);
    expect(gone.body).toEqual({ seq, erased: true });
    const audit = await h.gw.waitForStreamMessage('OMNI_EVENTS', 'omni.events.audit.erasure', (m: any) => m.at >= since && m.requestedBy === 'dpo' && m.erased.deadLetters === 1);
    expect(audit).toMatchObject({ reason: 'api' });
    expect((await h.api(`/v1/dead-letters/${seq}`)).status).toBe(404);
    expect((await del(DPO)).body.error).toMatchObject({ code: 'not_found', field: 'seq' });
    const after = await dumpStreams(h.gw.nc);
    for (const needle of ['Удаляев', '112-233-445', 'dlq-delete-person']) expect(findIn(after, needle), needle).toEqual([]);
  }, 120_000);
});
