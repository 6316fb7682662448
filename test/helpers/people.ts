/**
 * Two customers with distinctive data (name, phone, a rare Cyrillic word) and their story through
 * the real gateway path (webhook channel, agent reply over the API, a refused event parked as a
 * dead letter), for erasure tests that grep every store for what must be gone.
 */
import { expect } from 'vitest';
import { jetstream } from '@nats-io/jetstream';
import { post, SITE_SECRET, type ApiHarness } from '../api/support.js';

export interface Person {
  id: string;
  name: string;
  phone: string;
  word: string;
}

export const IVAN: Person = { id: 'ivan-7781', name: 'Иннокентий Жмыхов', phone: '+7 916 555-01-77', word: 'Жужелица' };
export const MARIA: Person = { id: 'maria-3302', name: 'Марфа Пихтовна', phone: '+7 903 444-22-11', word: 'Выхухоль' };

/** A message through the webhook channel; resolves with its ticket id once the router logged it. */
export async function write(h: ApiHarness, p: Person, messageId: string, text: string, file?: string): Promise<string> {
  const res = await fetch(`${h.gw.httpUrl}/connectors/webhook/site/messages`, {
    method: 'POST',
    headers: { authorization: `Bearer ${SITE_SECRET}` },
    body: JSON.stringify({
      messageId,
      sender: { id: p.id, name: p.name, phone: p.phone },
      text,
      ...(file ? { attachments: [{ name: `${p.id}-скан.txt`, mimeType: 'text/plain', contentBase64: Buffer.from(file).toString('base64') }] } : {}),
    }),
  });
  expect(res.status).toBe(202);
  const e = await h.gw.waitForEvent((ev) => ev.type === 'ticket.message' && (ev.entry as any)?.event?.id === `webhook:site:${messageId}`);
  return e.ticketId;
}

/** A ticket with an attachment, a second message, an agent's answer naming them, and a dead letter. */
export async function story(h: ApiHarness, p: Person): Promise<string> {
  const ticket = await write(h, p, `${p.id}-1`, `Здравствуйте, это ${p.name}, телефон ${p.phone}. ${p.word} не пришла`, `Паспорт: ${p.name}, ${p.word}`);
  await write(h, p, `${p.id}-2`, `Ещё раз про ${p.word}`);
  await h.api(`/v1/tickets/${ticket}/replies`, post({ text: `${p.name.split(' ')[0]}, ${p.word} найдена` }));
  await h.gw.waitForEvent((e) => e.type === 'ticket.delivery' && e.ticketId === ticket);
  // An event the router refuses (no conversation): parked as a dead letter with the whole payload.
  await jetstream(h.gw.nc).publish('omni.in.webhook.site', JSON.stringify({ v: 1, type: 'message.inbound', id: `webhook:site:${p.id}-bad`, sender: { id: p.id, displayName: p.name, handles: { phone: p.phone } }, text: p.word }));
  await h.gw.waitForStreamMessage('OMNI_DLQ', 'omni.dlq.>', (m: any) => JSON.stringify(m).includes(`${p.id}-bad`) || Buffer.from(String(m.payload ?? ''), m.payloadEncoding === 'base64' ? 'base64' : 'utf8').toString().includes(`${p.id}-bad`));
  return ticket;
}
