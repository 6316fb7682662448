/**
 * Erasing one person must not touch the customers whose identifiers contain theirs: `an@mail.ru`
 * is inside `ivan@mail.ru`, `f1-user-7` is the head of `f1-user-70`. An outside trial erased Anna
 * and with her the transport copies, events and a pending reply of Ivan (lost without a word).
 * And a reply to a ticket that lives on but named the erased person is erased too: its agent
 * is told it was not sent (failedReplies, ticket.delivery_failed), with no dead letter holding it.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createLogger } from '../../src/core/logger.js';
import { Eraser } from '../../src/core/erasure.js';
import { post, startApiHarness, type ApiHarness } from './support.js';
import { dumpStreams, findIn } from '../helpers/store-dump.js';

let h: ApiHarness;
beforeAll(async () => {
  h = await startApiHarness({ outbound: { maxAttempts: 100, backoffBase: '200ms', backoffMax: '300ms' } });
}, 120_000);
afterAll(async () => h?.stop());

describe('erasure and the customers next to the erased one', () => {
  it('erases an@mail.ru and f1-user-7 only, keeps ivan@mail.ru and f1-user-70 whole, their pending replies sent; a reply naming the erased one is reported failed', async () => {
    const anna = await h.openTicket('anna-1', 'an@mail.ru', 'Не приходит чек');
    const seven = await h.openTicket('seven-1', 'f1-user-7', 'Вопрос по доставке');
    const ivan = await h.openTicket('ivan-1', 'ivan@mail.ru', 'Здравствуйте, где заказ?');
    const seventy = await h.openTicket('seventy-1', 'f1-user-70', 'Добрый день');

    // Replies to Ivan and to f1-user-70 wait in their retries (the channel answers 503); the one to
    // f1-user-70 names Anna's address, the one to Ivan does not.
    let down = true;
    h.callbackStatus = () => (down ? 503 : 200);
    expect((await h.api(`/v1/tickets/${ivan}/replies`, post({ text: 'Ваш заказ в пути' }))).status).toBe(202);
    expect((await h.api(`/v1/tickets/${seventy}/replies`, post({ text: 'Напишите коллеге на an@mail.ru, она поможет' }))).status).toBe(202);
    await h.gw.waitForStreamMessage('OMNI_OUT', 'omni.out.>', (m: any) => m.ticketId === seventy);

    const eraser = new Eraser(h.gw.gateway.bus, createLogger({ level: 'silent' }));
    const result = await eraser.erase({ ticketIds: [anna, seven], identities: ['an@mail.ru', 'f1-user-7'] }, { reason: 'api', requestedBy: 'test' });
    // Anna's and f1-user-7's own message each, and the reply that named Anna.
    expect(result.erased.inbound).toBe(2);
    expect(result.erased.outbound).toBe(1);

    const dump = await dumpStreams(h.gw.nc);
    for (const stream of ['OMNI_IN', 'OMNI_EVENTS', 'OMNI_LOG']) {
      for (const kept of ['ivan@mail.ru', 'f1-user-70', 'Здравствуйте, где заказ?', 'Добрый день']) {
        expect(findIn(new Map([[stream, dump.get(stream) ?? []]]), kept).length, `${kept} in ${stream}`).toBeGreaterThan(0);
      }
    }
    expect(findIn(dump, 'Ваш заказ в пути').length).toBeGreaterThan(0);
    for (const gone of ['"an@mail.ru"', '<an@mail.ru>', 'f1-user-7"', 'Не приходит чек', 'Вопрос по доставке']) {
      expect(findIn(dump, gone).filter((hit) => !hit.includes('KV-Operation: PURGE')), gone).toEqual([]);
    }
    // The reply that named Anna: gone from the transport; the log of the ticket it belongs to keeps
    // its record (another customer's ticket; docs/privacy.md says so).
    expect(findIn(dump, 'Напишите коллеге').filter((hit) => !hit.startsWith('OMNI_LOG'))).toEqual([]);

    down = false;
    // Ivan's reply goes out; the one that named Anna is reported failed on its ticket, not lost in silence.
    await h.gw.waitForEvent((e) => e.type === 'ticket.delivery' && e.ticketId === ivan);
    expect(h.sent.map((r) => r.text)).toContain('Ваш заказ в пути');
    const failed = await h.gw.waitForEvent((e) => e.type === 'ticket.delivery_failed' && e.ticketId === seventy);
    expect(JSON.stringify(failed)).toContain('erased:');
    const { ticket } = (await h.api(`/v1/tickets/${seventy}`)).body;
    expect(ticket.failedReplies).toEqual([expect.objectContaining({ reason: expect.stringMatching(/^erased: /) })]);
    expect(h.sent.map((r) => r.text)).not.toContain('Напишите коллеге на an@mail.ru, она поможет');
    // No dead letter or other transport copy holds the erased text again.
    expect(findIn(await dumpStreams(h.gw.nc), 'Напишите коллеге').filter((hit) => !hit.startsWith('OMNI_LOG'))).toEqual([]);
  }, 180_000);
});
