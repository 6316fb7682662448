/**
 * Inbound messages published on an `omni.in` subject no router consumer reads (a partition
 * computed with another count, extra tokens) are stored by JetStream (OMNI_IN takes all of
 * omni.in.>): the owner of the unpartitioned unit moves inbound events to their partition,
 * where they are routed, and parks the rest with the reason. Found by the bench, whose publisher
 * hashed into 32 partitions against a gateway of 4: 606 of 5,000 events routed, the rest stored
 * where nothing read them.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { jetstream, jetstreamManager } from '@nats-io/jetstream';
import { createLogger } from '../../src/core/logger.js';
import { DeadLetter } from '../../src/core/schema.js';
import { replayOne } from '../../src/dlq.js';
import { Streams, Subjects, orderKey, partitionOf } from '../../src/core/subjects.js';
import { sweepStrays } from '../../src/router/strays.js';
import { chatMessage } from '../helpers/events.js';
import { startGateway, type TestGateway } from '../helpers/gateway.js';

let gw: TestGateway;
beforeAll(async () => {
  // No sweep of its own during the test: the test sweeps (the loop is tested below).
  gw = await startGateway({ router: { partitions: 4, straySweep: '1h' } });
});
afterAll(async () => gw?.stop());

describe('inbound strays', () => {
  it('routes an event stored on a partition the deployment does not have, parks what is no event, and leaves the read subjects alone', async () => {
    const js = jetstream(gw.nc);
    const jsm = await jetstreamManager(gw.nc);
    const stray = chatMessage({ chat: 'stray-1', text: 'Здравствуйте, с 32 разделами' });
    const wellPlaced = chatMessage({ chat: 'stray-2' });
    const partition = partitionOf(orderKey(stray), 4);
    // What an outside publisher hashing into the default 32 would do against this deployment of 4.
    await js.publish(`omni.in.webhook.site.${4 + partition}`, JSON.stringify(stray), { msgID: stray.id });
    await js.publish('omni.in.webhook.site.03', JSON.stringify(chatMessage({ chat: 'stray-3' })));
    await js.publish('omni.in.webhook.site.1.extra', 'not json');
    await js.publish(gw.gateway.bus.inboundSubject(wellPlaced), JSON.stringify(wellPlaced), { msgID: wellPlaced.id });
    await gw.waitForEvent((e) => e.type === 'ticket.message' && e.entry?.kind === 'inbound' && e.entry.event.id === wellPlaced.id);

    const lines: string[] = [];
    const log = createLogger({ level: 'warn', destination: { write: (l: string) => lines.push(l) } as unknown as NodeJS.WritableStream });
    const sweep = await sweepStrays(gw.gateway.bus, log);
    expect(sweep).toEqual({ moved: 2, parked: 1, left: 0, subjects: { [`omni.in.webhook.site.${4 + partition}`]: 1, 'omni.in.webhook.site.03': 1, 'omni.in.webhook.site.1.extra': 1 } });
    expect(lines.join('')).toContain('inbound messages were stored on subjects no router reads');

    // The moved event is routed like any other, once.
    const routed = await gw.waitForEvent((e) => e.type === 'ticket.message' && e.entry?.kind === 'inbound' && e.entry.event.id === stray.id);
    expect(routed.conversation?.id).toBe('stray-1');
    // What is left on OMNI_IN is on subjects the router reads.
    const subjects = Object.keys((await jsm.streams.info(Streams.inbound, { subjects_filter: Subjects.inboundAll })).state.subjects ?? {});
    expect(subjects.every((s) => Subjects.isInboundConsumed(s, 4))).toBe(true);
    // The payload that is no event is a dead letter with the subject and the reason.
    const letter = await gw.waitForStreamMessage(Streams.deadLetter, 'omni.dlq.router', (d: { code?: string }) => d.code === 'unread_subject');
    expect(letter).toMatchObject({ subject: 'omni.in.webhook.site.1.extra' });
    expect((letter as { reason: string }).reason).toMatch(/no router reads .* payload is not valid JSON/);

    // A second sweep finds nothing.
    expect(await sweepStrays(gw.gateway.bus, log)).toEqual({ moved: 0, parked: 0, left: 0, subjects: {} });
    const metrics = await (await fetch(`${gw.httpUrl}/metrics`)).text();
    expect(metrics).toMatch(/omnigate_inbound_strays_total\{outcome="moved"\} 2/);

    // Replayed, it goes to the subject of its channel and account that the router reads (not back
    // where nothing reads it, to be parked there again): judged there, parked with its own reason.
    const stored = await jsm.streams.getMessage(Streams.deadLetter, { last_by_subj: 'omni.dlq.router' });
    const parked = DeadLetter.parse(stored!.json());
    expect(parked.code).toBe('unread_subject');
    expect(await replayOne(gw.nc, js, stored!.seq, parked)).toEqual({ outcome: 'replayed', detail: 'onto omni.in.webhook.site (no router reads omni.in.webhook.site.1.extra)' });
    const judged = await gw.waitForStreamMessage(Streams.deadLetter, 'omni.dlq.router', (d: { code?: string }) => d.code === 'invalid_json');
    expect(judged).toMatchObject({ subject: 'omni.in.webhook.site' });
    // One with no account to go back to is refused, with what to do.
    expect(await replayOne(gw.nc, js, stored!.seq, { ...parked, subject: 'omni.in.webhook' })).toMatchObject({ outcome: 'refused', detail: expect.stringMatching(/names no channel and account/) });
  });

  it('leaves a refusal in place, undeleted, while the dead letters are rate-limited', async () => {
    const limited = await startGateway({ router: { partitions: 2, straySweep: '1h' }, deadLetters: { burst: 1, perMinute: 1 } });
    try {
      const js = jetstream(limited.nc);
      await js.publish('omni.in.webhook.site.7', 'not json, first');
      await js.publish('omni.in.webhook.site.7', 'not json, second');
      const log = createLogger({ level: 'silent' });
      // The burst of one takes the first; the second is not deleted unstored.
      expect(await sweepStrays(limited.gateway.bus, log)).toMatchObject({ moved: 0, parked: 1, left: 1, subjects: { 'omni.in.webhook.site.7': 2 } });
      const left = await jetstreamManager(limited.nc).then((m) => m.streams.info(Streams.inbound, { subjects_filter: 'omni.in.webhook.site.7' }));
      expect(left.state.subjects).toEqual({ 'omni.in.webhook.site.7': 1 });
      const metrics = await (await fetch(`${limited.httpUrl}/metrics`)).text();
      expect(metrics).toMatch(/omnigate_inbound_strays_total\{outcome="left"\} 1/);
    } finally {
      await limited.stop();
    }
  });

  it('stops between messages once the unpartitioned unit is no longer ours, leaving the rest for its next owner', async () => {
    const js = jetstream(gw.nc);
    const e = chatMessage({ chat: 'stray-4' });
    await js.publish('omni.in.webhook.site.9', JSON.stringify(e));
    const log = createLogger({ level: 'silent' });
    expect(await sweepStrays(gw.gateway.bus, log, { owned: () => false })).toMatchObject({ moved: 0, parked: 0, subjects: { 'omni.in.webhook.site.9': 1 } });
    expect(await sweepStrays(gw.gateway.bus, log)).toMatchObject({ moved: 1, subjects: { 'omni.in.webhook.site.9': 1 } });
    await gw.waitForEvent((ev) => ev.type === 'ticket.message' && ev.entry?.kind === 'inbound' && ev.entry.event.id === e.id);
  });

  it('is swept by the router on its own, every router.straySweep', async () => {
    const own = await startGateway({ router: { partitions: 2, straySweep: '300ms' } });
    try {
      const e = chatMessage({ chat: 'stray-5', text: 'Добрый день' });
      await jetstream(own.nc).publish('omni.in.webhook.site.5', JSON.stringify(e), { msgID: e.id });
      const routed = await own.waitForEvent((ev) => ev.type === 'ticket.message' && ev.entry?.kind === 'inbound' && ev.entry.event.id === e.id);
      expect(routed.conversation?.id).toBe('stray-5');
      // Logged once the sweep is done, which may be after the event was routed.
      for (let i = 0; i < 300 && !own.logs.join('\n').includes('inbound messages were stored on subjects no router reads'); i++) await new Promise((r) => setTimeout(r, 100));
      expect(own.logs.join('\n')).toContain('inbound messages were stored on subjects no router reads');
    } finally {
      await own.stop();
    }
  });

  it('tells a read subject from a stray one', () => {
    expect(Subjects.isInboundConsumed('omni.in.webhook.site', 4)).toBe(true);
    expect(Subjects.isInboundConsumed('omni.in.webhook.site.3', 4)).toBe(true);
    expect(Subjects.isInboundConsumed('omni.in.webhook.site.4', 4)).toBe(false);
    expect(Subjects.isInboundConsumed('omni.in.webhook.site.03', 4)).toBe(false);
    expect(Subjects.isInboundConsumed('omni.in.webhook.site.1.x', 4)).toBe(false);
    expect(Subjects.isInboundConsumed('omni.in.webhook', 4)).toBe(false);
  });
});
