/**
 * An erased person's address in another customer's mail (Olga's mail Cc'd Ivan, and the agent's
 * reply-all copied him) is taken out of that ticket's log as the API reads it, not only out of its
 * record. The outside trial (152-FZ) found the ticket rewritten but `GET /v1/tickets/{id}` still
 * showing the log entry's `cc: ['ivan.petrov@mail.ru']`. Olga's mail itself stays whole.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createLogger } from '../../src/core/logger.js';
import { Eraser } from '../../src/core/erasure.js';
import { post, startApiHarness, type ApiHarness } from './support.js';
import { emailMessage, publishEvent } from '../helpers/events.js';

let h: ApiHarness;
beforeAll(async () => {
  h = await startApiHarness({ outbound: { maxAttempts: 100, backoffBase: '200ms', backoffMax: '300ms' } });
}, 120_000);
afterAll(async () => h?.stop());

describe('erasure and a Cc in another customer\'s ticket log', () => {
  it('leaves the erased address out of the To and Cc of the log entries of tickets that live on', async () => {
    const ivanMail = emailMessage({ messageId: '<ivan-1@mail.ru>', from: 'ivan.petrov@mail.ru', subject: 'Мой заказ', text: 'Где мой заказ?' });
    await publishEvent(h.gw.nc, ivanMail);
    const { ticketId: ivan } = await h.gw.waitForEvent((e) => e.type === 'ticket.message' && (e.entry as any)?.event?.id === ivanMail.id);
    const olgaMail = emailMessage({ messageId: '<olga-1@bk.ru>', from: 'olga@bk.ru', subject: 'Акт сверки', text: 'Пришлите акт сверки', cc: ['Иван Петров <ivan.petrov@mail.ru>', 'buh@romashka.ru'] });
    await publishEvent(h.gw.nc, olgaMail);
    const { ticketId: olga } = await h.gw.waitForEvent((e) => e.type === 'ticket.message' && (e.entry as any)?.event?.id === olgaMail.id);
    expect(olga).not.toBe(ivan);
    // The agent answers all: Ivan is copied on the reply too (its log entry names him in cc).
    expect((await h.api(`/v1/tickets/${olga}/replies`, post({ text: 'Акт во вложении' }))).status).toBe(202);
    const before = JSON.stringify((await h.api(`/v1/tickets/${olga}`)).body.log);
    expect(before.match(/ivan\.petrov@mail\.ru/g)?.length).toBeGreaterThanOrEqual(2);

    const eraser = new Eraser(h.gw.gateway.bus, createLogger({ level: 'silent' }));
    await eraser.erase({ ticketIds: [ivan], identities: ['ivan.petrov@mail.ru'] }, { reason: 'api', requestedBy: 'test' });

    for (const route of [`/v1/tickets/${olga}`, `/v1/tickets/${olga}/log`]) {
      const { status, body } = await h.api(route);
      expect(status, route).toBe(200);
      const text = JSON.stringify(body.log);
      expect(text, route).not.toContain('ivan.petrov@mail.ru');
      expect(text, route).not.toContain('Иван Петров');
      // Olga's mail and everyone else on it stay; no redaction entry is shown, no entry is unreadable.
      expect(text, route).toContain('Пришлите акт сверки');
      expect(text, route).toContain('buh@romashka.ru');
      expect(text, route).toContain('olga@bk.ru');
      expect(text, route).not.toContain('"redaction"');
      expect(body.unreadable, route).toBeUndefined();
      const inbound = (body.log as Array<{ kind: string; event?: any }>).find((l) => l.kind === 'inbound');
      expect(inbound?.event.email.cc, route).toEqual(['buh@romashka.ru']);
    }
    // Erased again (a repeated request): the same positions, never Olga's other addresses.
    await eraser.erase({ ticketIds: [], identities: ['ivan.petrov@mail.ru'] }, { reason: 'api', requestedBy: 'test' });
    const again = (await h.api(`/v1/tickets/${olga}`)).body.log as Array<{ kind: string; event?: any }>;
    expect(again.find((l) => l.kind === 'inbound')?.event.email.cc).toEqual(['buh@romashka.ru']);
  });
});
