/**
 * An erased person's Cc in another customer's ticket whose log is longer than a reader reads at
 * once (10,000 entries: GET /v1/tickets/{id}, its /log, the person export). The redaction entry
 * lands at the log's end, past the 10,000th entry; readers applied only the redactions they had
 * read themselves, so every one of them went on showing the erased address in the mail at the
 * start of the log. Real 10,000 entries, on the real API path: no limit is lowered here.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createLogger } from '../../src/core/logger.js';
import { Eraser } from '../../src/core/erasure.js';
import { Subjects } from '../../src/core/subjects.js';
import { ADMIN, READER, startApiHarness, type ApiHarness } from './support.js';
import { emailMessage, publishEvent } from '../helpers/events.js';

const DPO = 'dpo-token-0123456789abcdef-long-log';
const FILLER = 10_000;

let h: ApiHarness;
beforeAll(async () => {
  h = await startApiHarness({ api: { tokens: [{ name: 'helpdesk', token: ADMIN }, { name: 'dashboards', token: READER, readOnly: true }, { name: 'dpo', token: DPO, admin: true }] } });
}, 120_000);
afterAll(async () => h?.stop());

describe('erasure and a Cc at the start of a log longer than a read', () => {
  it('leaves the erased address out of every reader, though the redaction is past the 10,000th entry', async () => {
    const ivanMail = emailMessage({ messageId: '<ivan-long@mail.ru>', from: 'ivan.petrov@mail.ru', subject: 'Мой заказ', text: 'Где мой заказ?' });
    await publishEvent(h.gw.nc, ivanMail);
    const { ticketId: ivan } = await h.gw.waitForEvent((e) => e.type === 'ticket.message' && (e.entry as any)?.event?.id === ivanMail.id);
    const olgaMail = emailMessage({ messageId: '<olga-long@bk.ru>', from: 'olga@bk.ru', subject: 'Акт сверки', text: 'Пришлите акт сверки', cc: ['Иван Петров <ivan.petrov@mail.ru>', 'buh@romashka.ru'] });
    await publishEvent(h.gw.nc, olgaMail);
    const { ticketId: olga } = await h.gw.waitForEvent((e) => e.type === 'ticket.message' && (e.entry as any)?.event?.id === olgaMail.id);

    // A long-lived ticket: 10,000 more entries after Olga's mail (escalations: nothing SQL keeps per entry).
    const js = h.gw.gateway.bus.js;
    for (let i = 0; i < FILLER; i += 500) {
      await Promise.all(Array.from({ length: 500 }, (_, j) => js.publish(Subjects.ticketLog(olga), JSON.stringify({
        kind: 'escalation', at: new Date().toISOString(), id: `esc-${i + j}`, reason: 'no_answer', target: 'lead@romashka.ru', outcome: 'delivered',
      }))));
    }
    await h.gw.gateway.readModel!.caughtUp(60_000);
    const db = await h.gw.gateway.readModel!.database();
    const [{ contact_id: olgaContact }] = (await db.query<{ contact_id: string }>('SELECT contact_id FROM tickets WHERE id = $1', [olga])) as [{ contact_id: string }];

    const readers = [
      { name: 'ticket', read: async () => (await h.api(`/v1/tickets/${olga}`)).body.log },
      { name: 'log', read: async () => (await h.api(`/v1/tickets/${olga}/log`)).body.log },
      { name: 'export', read: async () => (await h.api(`/v1/contacts/${olgaContact}/export`, { token: DPO })).body.tickets.find((t: any) => t.ticket.id === olga).log },
    ];
    // Read (and so "cached" by whoever asked) before the erasure: the address is there.
    for (const r of readers) expect(JSON.stringify(await r.read()), r.name).toContain('ivan.petrov@mail.ru');

    await new Eraser(h.gw.gateway.bus, createLogger({ level: 'silent' })).erase({ ticketIds: [ivan], identities: ['ivan.petrov@mail.ru'] }, { reason: 'api', requestedBy: 'test' });

    for (const r of readers) {
      const log = (await r.read()) as Array<{ seq: number; kind: string; event?: any }>;
      // The read stops where it always did: the redaction entry itself is not in it.
      expect(log.length, r.name).toBe(FILLER);
      const text = JSON.stringify(log);
      expect(text, r.name).not.toContain('ivan.petrov@mail.ru');
      expect(text, r.name).not.toContain('Иван Петров');
      expect(log.find((l) => l.kind === 'inbound')?.event.email.cc, r.name).toEqual(['buh@romashka.ru']);
    }
  }, 180_000);
});
