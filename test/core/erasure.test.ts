/**
 * Erasure and retention in the NATS stores, through the real gateway path: two customers write
 * through the webhook channel (with a phone, a name and an attachment), an agent answers, one
 * customer also produces a dead letter. Erasing one customer must leave nothing of them in any
 * stream, bucket or the object store (every stream dumped and searched for the name, the phone
 * and a distinctive word), and everything of the other customer.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createLogger } from '../../src/core/logger.js';
import { Eraser } from '../../src/core/erasure.js';
import { RetentionSweeper } from '../../src/core/retention.js';
import { AuditErasureEvent } from '../../src/core/schema.js';
import { post, startApiHarness, until, type ApiHarness } from '../api/support.js';
import { IVAN, MARIA, story as storyOf, write as writeAs, type Person } from '../helpers/people.js';
import { dumpStreams, findIn } from '../helpers/store-dump.js';
import { beforePurges } from '../helpers/purge-hook.js';

let h: ApiHarness;
beforeAll(async () => {
  h = await startApiHarness();
});
afterAll(async () => h?.stop());

const write = (p: Person, messageId: string, text: string, file?: string) => writeAs(h, p, messageId, text, file);
const story = (p: Person) => storyOf(h, p);

describe('erasure of one person from NATS', () => {
  it('leaves no name, phone or message word of the person in any stream, bucket or object, and the other customer whole', async () => {
    const ivanTicket = await story(IVAN);
    const mariaTicket = await story(MARIA);
    let dump = await dumpStreams(h.gw.nc);
    for (const needle of [IVAN.name, IVAN.phone, IVAN.word, MARIA.name, MARIA.word]) expect(findIn(dump, needle).length, needle).toBeGreaterThan(0);

    const eraser = new Eraser(h.gw.gateway.bus, createLogger({ level: 'silent' }));
    const options = { reason: 'api' as const, requestedBy: 'test' };
    const result = await eraser.erase({ ticketIds: [ivanTicket], identities: [IVAN.id, IVAN.phone] }, options);
    const audit = await eraser.announce(result, options);

    expect(result.erased).toMatchObject({ tickets: 1, attachments: 1, attachmentRefs: 1 });
    expect(result.erased.logEntries).toBeGreaterThanOrEqual(4); // 2 inbound, outbound, delivery
    expect(result.erased.inbound).toBe(3); // two messages and the refused one
    expect(result.erased.outbound).toBe(1);
    expect(result.erased.deadLetters).toBe(1);
    expect(result.erased.threadKeys).toBeGreaterThan(0);
    expect(result.erased.events).toBeGreaterThan(0);

    dump = await dumpStreams(h.gw.nc);
    for (const needle of [IVAN.name, IVAN.phone, IVAN.phone.replace(/\D/g, ''), IVAN.word, IVAN.id]) {
      expect(findIn(dump, needle), `${needle} left behind`).toEqual([]);
    }
    // The ticket id (a number, not personal) stays only as the key of the ticket record's purge
    // marker, and in the event telling copies outside the gateway to delete theirs.
    const left = findIn(dump, ivanTicket).filter((hit) => !hit.includes('KV-Operation: PURGE'));
    expect(left).toHaveLength(1);
    expect(left[0]).toMatch(/^OMNI_EVENTS#\d+: omni\.events\.ticket\.erased /);
    // The other customer is untouched: their ticket, log, index, transport copies, file and dead letter.
    const kept = (needle: string, stream: string) => expect(findIn(new Map([[stream, dump.get(stream) ?? []]]), needle).length, `${needle} in ${stream}`).toBeGreaterThan(0);
    for (const stream of ['OMNI_LOG', 'OMNI_IN', 'OMNI_OUT', 'OMNI_EVENTS', 'OMNI_DLQ', 'OBJ_omni_media']) kept(MARIA.word, stream);
    for (const stream of ['OMNI_LOG', 'OMNI_IN', 'OMNI_EVENTS', 'OMNI_DLQ', 'KV_omni_tickets', 'OBJ_omni_media']) kept(MARIA.name, stream);
    expect((await h.api(`/v1/tickets/${mariaTicket}`)).body.log.length).toBeGreaterThanOrEqual(4);
    // Maria writes again into her open ticket: her thread binding survived.
    expect(await write(MARIA, `${MARIA.id}-3`, 'Спасибо')).toBe(mariaTicket);

    // The audit event: counts and who asked, no person's data.
    const announced = await h.gw.waitForStreamMessage('OMNI_EVENTS', 'omni.events.audit.erasure', (m: any) => m.id === audit.id);
    expect(AuditErasureEvent.parse(announced)).toEqual(audit);
    expect(JSON.stringify(announced)).not.toMatch(new RegExp([IVAN.id, ivanTicket, IVAN.word, '916'].join('|'), 'i'));
  }, 300_000); // a whole sweep through PGlite and the bus: over a minute under a full-suite load
});

describe('retention sweeper', () => {
  it('erases tickets closed longer ago than retention.tickets, and expired attachments, and nothing younger', async () => {
    const old = await write({ ...IVAN, id: 'old-1' }, 'old-1-1', 'Старое обращение: Мордовник', 'файл Мордовник');
    const fresh = await write({ ...IVAN, id: 'fresh-1' }, 'fresh-1-1', 'Новое обращение');
    await h.api(`/v1/tickets/${old}/status`, post({ status: 'closed' }));
    await until(async () => (await h.gw.ticket(old))?.status === 'closed', 'the ticket closed');
    const sweeper = new RetentionSweeper(h.gw.gateway.bus, { ticketsMs: 86_400_000, attachmentsMs: 0, sweepIntervalMs: 60_000, leaseTtlMs: 3000, holder: 'test' }, createLogger({ level: 'silent' }));
    // Today nothing is a day past closing.
    expect((await sweeper.sweep(Date.now())).tickets).toBeUndefined();
    const later = await sweeper.sweep(Date.now() + 2 * 86_400_000);
    expect(later.tickets?.ticketCount).toBe(1);
    expect((await h.gw.gateway.bus.kv.tickets.get(old))?.operation).toBe('PURGE');
    expect((await h.gw.gateway.bus.kv.tickets.get(fresh))?.operation).toBe('PUT');
    const dump = await dumpStreams(h.gw.nc);
    expect(findIn(dump, 'Мордовник')).toEqual([]);

    // An hour, not a minute: under a full-suite load the steps above took over a minute, and the file aged past it.
    const attachments = new RetentionSweeper(h.gw.gateway.bus, { ticketsMs: 0, attachmentsMs: 3_600_000, sweepIntervalMs: 60_000, leaseTtlMs: 3000, holder: 'test' }, createLogger({ level: 'silent' }));
    expect(await attachments.sweep(Date.now())).toEqual({ attachments: 0, attachmentRefs: 0 });
    const swept = await attachments.sweep(Date.now() + 2 * 3_600_000);
    expect(swept.attachments).toBeGreaterThan(0);
    expect(swept.attachmentRefs).toBe(swept.attachments);
    expect((await h.gw.gateway.bus.media.list()).filter((i) => !i.deleted)).toEqual([]);
  }, 300_000); // a whole sweep through PGlite and the bus: over a minute under a full-suite load
});

describe('an erasure cut short', () => {
  it('has announced ticket.erased for every ticket before it purged anything: once per erasure, however often it is published', async () => {
    const ticket = await write({ ...IVAN, id: 'cut-1', word: 'Обрыв' }, 'cut-1-1', 'Обрыв посреди удаления');
    const log = createLogger({ level: 'silent' });
    // The process "dies" at its first purge.
    const dying = new Eraser(beforePurges(h.gw.gateway.bus, async () => Promise.reject(new Error('killed'))), log);
    await expect(dying.erase({ ticketIds: [ticket], identities: [] }, { reason: 'retention', requestedBy: 'retention' })).rejects.toThrow('killed');
    const dump = await dumpStreams(h.gw.nc);
    const announced = findIn(new Map([['OMNI_EVENTS', dump.get('OMNI_EVENTS') ?? []]]), `"ticketId":"${ticket}"`).filter((hit) => hit.includes('omni.events.ticket.erased '));
    expect(announced).toHaveLength(1);
    // Its Nats-Msg-Id makes a second publication of the same announcement (a retry) a duplicate.
    const id = /"erasureId":"([^"]+)"/.exec(dump.get('OMNI_EVENTS')!.find((t) => t.startsWith('omni.events.ticket.erased') && t.includes(`"ticketId":"${ticket}"`))!)![1]!;
    const { announceErasedTickets } = await import('../../src/core/ticket-erased.js');
    await announceErasedTickets(h.gw.gateway.bus, [ticket], id, 'retention');
    const again = await dumpStreams(h.gw.nc);
    expect(findIn(new Map([['OMNI_EVENTS', again.get('OMNI_EVENTS') ?? []]]), `"ticketId":"${ticket}"`).filter((hit) => hit.includes('omni.events.ticket.erased '))).toHaveLength(1);
  });
});
