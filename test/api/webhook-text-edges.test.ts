/**
 * What docs/api.md ("Text the gateway changes") and the README's webhook section promise of the
 * web-form channel: direction overrides taken out of a name and replaced in a file name, a NUL
 * refused naming its field, at most 20 attachments per message.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SITE_SECRET, startApiHarness, type ApiHarness } from './support.js';

describe('web-form channel text edges', () => {
  let h: ApiHarness;
  beforeAll(async () => {
    h = await startApiHarness();
  }, 120_000);
  afterAll(async () => {
    await h?.stop();
  });

  const postRaw = (body: string) =>
    fetch(`${h.gw.httpUrl}/connectors/webhook/site/messages`, { method: 'POST', headers: { authorization: `Bearer ${SITE_SECRET}`, 'content-type': 'application/json' }, body });
  const file = (name: string) => ({ name, mimeType: 'text/plain', contentBase64: Buffer.from('счёт').toString('base64') });

  it('takes direction overrides out of names, replaces them in file names, refuses a NUL and a 21st file naming the field', async () => {
    const ticket = await h.openTicket('rlo-1', 'rlo-sender', 'Счёт во вложении', [file('invoice\u202Efdp.exe')]);
    const sent = await postRaw(JSON.stringify({ messageId: 'rlo-2', sender: { id: 'rlo-sender', name: 'Evil\u202Egnp.exe' }, text: 'ещё' }));
    expect(sent.status).toBe(202);
    await h.gw.waitForEvent((ev) => ev.type === 'ticket.message' && (ev.entry as any)?.event?.id === 'webhook:site:rlo-2');
    const { body } = await h.api(`/v1/tickets/${ticket}`);
    const inbound = body.log.filter((e: any) => e.kind === 'inbound');
    expect(inbound[0].event.attachments[0].name).toBe('invoice_fdp.exe');
    expect(inbound[1].event.sender.displayName).toBe('Evilgnp.exe');

    const nul = await postRaw(JSON.stringify({ messageId: 'nul-1', sender: { id: 'nul-sender' }, text: 'a\u0000b' }));
    expect(nul.status).toBe(400);
    expect(((await nul.json()) as { field?: string }).field).toBe('text');

    const many = await postRaw(JSON.stringify({ messageId: 'many-1', sender: { id: 'many-sender' }, text: 'файлы', attachments: Array.from({ length: 21 }, (_, i) => file(`f${i}.txt`)) }));
    expect(many.status).toBe(400);
    expect(((await many.json()) as { field?: string }).field).toBe('attachments');
  }, 60_000);
});
