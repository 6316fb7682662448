/**
 * Dead letters are bounded: a 10 MB refusal is stored as its head with the reason, a source over
 * its rate is counted but not stored, the dead-letter stream has an age and a size limit, and
 * the installation id is created once and shared by every replica.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { jetstream } from '@nats-io/jetstream';
import { Bus } from '../../src/core/bus.js';
import { DeadLetterSourceError, DeadLetters, encodeLetter, letterId, sourceSubjectFilter } from '../../src/core/dead-letter.js';
import { createLogger } from '../../src/core/logger.js';
import { metrics } from '../../src/core/metrics.js';
import { DeadLetter } from '../../src/core/schema.js';
import { Streams } from '../../src/core/subjects.js';
import { startNats, type TestNats } from '../helpers/nats-server.js';

let nats: TestNats;
let bus: Bus;
const log = createLogger({ level: 'silent' });
const DAY = 86_400_000;

beforeAll(async () => {
  nats = await startNats();
  bus = await Bus.connect(
    {
      url: nats.url, replicas: 1, duplicateWindowMs: 120_000, retentionMs: 7 * DAY, dedupTtlMs: DAY, leaseTtlMs: 1_500,
      deadLetters: { maxAgeMs: 3 * DAY, maxBytes: 64 * 1024 * 1024, maxPayloadBytes: 64 * 1024, perMinute: 60, burst: 120 },
    },
    log,
  );
  await bus.provision();
});
afterAll(async () => {
  await bus?.close();
  await nats?.stop();
});

const counted = async (c: { get(): Promise<{ values: Array<{ labels: object; value: number }> }> }, labels: Record<string, string>) =>
  (await c.get()).values.filter((v) => Object.entries(labels).every(([k, x]) => (v.labels as Record<string, unknown>)[k] === x)).reduce((a, v) => a + v.value, 0);

describe('a dead letter', () => {
  const refusal = (payload: unknown) => ({ source: 'connector' as const, scope: 'webhook.site', subject: 'omni.in.webhook.site', code: 'invalid_json', reason: 'not JSON', payload });

  it('keeps a small payload whole', () => {
    const l = encodeLetter('inbound.webhook.site', refusal('{"a": "привет"}'), 1024, new Date().toISOString());
    expect(l).toMatchObject({ payload: '{"a": "привет"}', payloadEncoding: 'utf8', payloadBytes: Buffer.byteLength('{"a": "привет"}'), code: 'invalid_json' });
    expect(l.truncated).toBeUndefined();
  });

  it('keeps only the head of a 10 MB body, cut on a character boundary, and says how big it was', () => {
    const body = Buffer.from('ж'.repeat(5 * 1024 * 1024)); // 10 MB of two-byte characters
    const l = encodeLetter('inbound.webhook.site', refusal(body), 64 * 1024, new Date().toISOString());
    expect(l.truncated).toBe(true);
    expect(l.payloadBytes).toBe(body.length);
    expect(l.payloadEncoding).toBe('utf8');
    expect(l.payload).toMatch(/^ж+$/);
    expect(Buffer.byteLength(JSON.stringify(l.payload))).toBeLessThanOrEqual(64 * 1024);
    expect(Buffer.byteLength(JSON.stringify(l))).toBeLessThan(70 * 1024);
  });

  it('measures the payload as it travels: control characters and binary stay under the cap', () => {
    const controls = encodeLetter('router', refusal('\u0001'.repeat(60_000)), 64 * 1024, new Date().toISOString());
    expect(Buffer.byteLength(JSON.stringify(controls.payload))).toBeLessThanOrEqual(64 * 1024);
    expect(controls.truncated).toBe(true);
    const binary = encodeLetter('router', refusal(Buffer.from(Array.from({ length: 200_000 }, (_, i) => (i * 7919) % 256))), 64 * 1024, new Date().toISOString());
    expect(binary.payloadEncoding).toBe('base64');
    expect(binary.payload.length).toBeLessThanOrEqual(64 * 1024);
  });

  it('is stored capped on the bus, counted by source and reason', async () => {
    const before = await counted(metrics.parked, { source: 'connector', reason: 'too_big' });
    const r = await bus.deadLetters.park({ ...refusal(Buffer.alloc(3 * 1024 * 1024, 0x61)), code: 'too_big' });
    expect(r).toBe('stored');
    expect(await counted(metrics.parked, { source: 'connector', reason: 'too_big' })).toBe(before + 1);
    const m = await bus.jsm.streams.getMessage(Streams.deadLetter, { last_by_subj: 'omni.dlq.inbound.webhook.site' });
    const letter = DeadLetter.parse(m!.json());
    expect(letter).toMatchObject({ truncated: true, payloadBytes: 3 * 1024 * 1024, code: 'too_big' });
    expect(m!.data.length).toBeLessThan(70 * 1024);
  });
});

describe('the rate limit per source', () => {
  it('stores a burst, then counts without storing, per source; tokens come back with time', async () => {
    let now = Date.parse('2026-12-01T10:00:00Z');
    const letters = new DeadLetters(bus, { maxPayloadBytes: 4096, perMinute: 6, burst: 3 }, () => now);
    let n = 0; // every letter its own payload: identical ones are stored once (below)
    const park = (scope: string) => letters.park({ source: 'connector', scope: `webhook.${scope}`, subject: `omni.in.webhook.${scope}`, code: 'flood', reason: 'flood', payload: `x${n++}` });
    const suppressedBefore = await counted(metrics.deadLettersSuppressed, { source: 'connector', reason: 'flood' });
    const first = [];
    for (let i = 0; i < 10; i++) first.push(await park('flood-a'));
    expect(first.filter((r) => r === 'stored')).toHaveLength(3);
    // Another account has its own bucket.
    expect(await park('flood-b')).toBe('stored');
    expect(await counted(metrics.deadLettersSuppressed, { source: 'connector', reason: 'flood' })).toBe(suppressedBefore + 7);
    now += 10_000; // 6 per minute: one token per 10 s
    expect(await park('flood-a')).toBe('stored');
    expect(await park('flood-a')).toBe('suppressed');
    const c = await jetstream(bus.nc).consumers.get(Streams.deadLetter, { filter_subjects: 'omni.dlq.inbound.webhook.flood-a' });
    expect((await c.info(true)).num_pending).toBe(4);
    await c.delete();
  });
});

describe('the same refusal parked twice', () => {
  it('is stored once within the duplicate window (a park whose follow-up failed, then done again), and counted twice', async () => {
    const letters = new DeadLetters(bus, { maxPayloadBytes: 4096, perMinute: 600, burst: 100 });
    const mail = (payload: string, reason = 'email support@x folder INBOX uid 7: MIME nesting deeper than 100 levels') =>
      letters.park({ source: 'connector', scope: 'email.twice', subject: 'omni.in.email.twice', code: 'invalid_payload', reason, payload });
    const before = await counted(metrics.parked, { source: 'connector', reason: 'invalid_payload' });
    expect(await mail('письмо 1')).toBe('stored');
    expect(await mail('письмо 1')).toBe('stored'); // the same mail parked again: JetStream drops the copy
    expect(await mail('письмо 2')).toBe('stored'); // another payload: a letter of its own
    expect(await mail('письмо 1', 'another reason')).toBe('stored'); // the same bytes refused for another reason: its own
    expect(await counted(metrics.parked, { source: 'connector', reason: 'invalid_payload' })).toBe(before + 4);
    const c = await jetstream(bus.nc).consumers.get(Streams.deadLetter, { filter_subjects: 'omni.dlq.inbound.email.twice' });
    expect((await c.info(true)).num_pending).toBe(3);
    await c.delete();
  });
});

describe('failures of what was accepted', () => {
  it('a router letter that is the only copy of a customer message (too_large) is stored whatever the rate, whole up to the bus limit', async () => {
    const letters = new DeadLetters(bus, { maxPayloadBytes: 4096, perMinute: 6, burst: 3 });
    const big = `{"text":"${'я'.repeat(40_000)}"}`; // 80 KB: over maxPayloadBytes, well under max_payload
    const outcomes = [];
    for (let i = 0; i < 10; i++) outcomes.push(await letters.park({ source: 'router', subject: 'omni.in.webhook.site.p1', code: 'too_large', reason: 'ticket event too large', payload: `${big}${i}`, onlyCopy: true }));
    expect(outcomes.every((o) => o === 'stored')).toBe(true);
    const m = await bus.jsm.streams.getMessage(Streams.deadLetter, { last_by_subj: 'omni.dlq.router' });
    const letter = DeadLetter.parse(m!.json());
    expect(letter.truncated).toBeUndefined();
    expect(letter.payload).toBe(`${big}9`);
    // Without the mark the router's letters stay rate-limited (an outsider can cause them at will).
    const plain = [];
    for (let i = 0; i < 5; i++) plain.push(await letters.park({ source: 'router', subject: 'omni.in.webhook.site.p1', code: 'invalid_event', reason: 'x', payload: `p${i}` }));
    expect(plain.filter((o) => o === 'suppressed').length).toBeGreaterThan(0);
  });

  it('are stored whatever the rate: a webhook delivery, a reply, a helpdesk sync past their retries are the only copy left', async () => {
    const letters = new DeadLetters(bus, { maxPayloadBytes: 4096, perMinute: 6, burst: 3 });
    for (const source of ['webhook', 'outbound', 'helpdesk'] as const) {
      const outcomes = [];
      for (let i = 0; i < 10; i++) outcomes.push(await letters.park({ source, scope: 'backlog', subject: `omni.events.ticket.message`, code: 'retries_exhausted', reason: 'receiver down', payload: `event ${i}` }));
      expect(outcomes.every((o) => o === 'stored')).toBe(true);
    }
    const c = await jetstream(bus.nc).consumers.get(Streams.deadLetter, { filter_subjects: 'omni.dlq.webhook.backlog' });
    expect((await c.info(true)).num_pending).toBe(10);
    await c.delete();
  });
});

describe('the dead-letter stream', () => {
  it('has the configured age and size limits, also after an upgrade from an unbounded one', async () => {
    let info = await bus.jsm.streams.info(Streams.deadLetter);
    expect(info.config.max_age).toBe(3 * DAY * 1_000_000);
    expect(info.config.max_bytes).toBe(64 * 1024 * 1024);
    // As an older version left it: 30 days, no size limit.
    await bus.jsm.streams.update(Streams.deadLetter, { ...info.config, max_age: 30 * DAY * 1_000_000, max_bytes: -1 });
    await bus.provision();
    info = await bus.jsm.streams.info(Streams.deadLetter);
    expect(info.config.max_age).toBe(3 * DAY * 1_000_000);
    expect(info.config.max_bytes).toBe(64 * 1024 * 1024);
  });
});

describe('the installation id', () => {
  it('is created once and read by every replica', async () => {
    const other = await Bus.connect({ url: nats.url, replicas: 1, duplicateWindowMs: 120_000, retentionMs: 7 * DAY, dedupTtlMs: DAY, leaseTtlMs: 1_500 }, log);
    await other.provision();
    expect(bus.installationId).toMatch(/^[0-9a-f]{10}$/);
    expect(other.installationId).toBe(bus.installationId);
    await other.close();
  });

  it('comes with a Message-ID secret: 32 random bytes, created once, the same on every replica', async () => {
    const other = await Bus.connect({ url: nats.url, replicas: 1, duplicateWindowMs: 120_000, retentionMs: 7 * DAY, dedupTtlMs: DAY, leaseTtlMs: 1_500 }, log);
    await other.provision();
    expect(bus.messageIdSecret).toHaveLength(32);
    expect(Buffer.from(other.messageIdSecret).equals(Buffer.from(bus.messageIdSecret))).toBe(true);
    expect(Buffer.from(bus.messageIdSecret).equals(Buffer.alloc(32))).toBe(false);
    await other.close();
  });
});

describe('a source as people type it (the console, omnigate dlq --source)', () => {
  it('becomes a subject filter, and one that names no subject is refused naming the field', () => {
    expect(sourceSubjectFilter('inbound')).toBe('omni.dlq.inbound.>');
    expect(sourceSubjectFilter('inbound.telegram.support')).toBe('omni.dlq.inbound.telegram.support');
    expect(sourceSubjectFilter('outbound.*.*')).toBe('omni.dlq.outbound.*.*');
    expect(sourceSubjectFilter('omni.dlq.router')).toBe('omni.dlq.router');
    for (const bad of ['a..b', 'inbound.', '.a', '.', 'inbound..webhook', 'a.>.b', 'a b']) {
      expect(() => sourceSubjectFilter(bad), bad).toThrow(DeadLetterSourceError);
    }
    expect(() => sourceSubjectFilter('a..b')).toThrow(/none empty/);
  });
});

describe('a letter id and a cut near the cap (review of stop 47)', () => {
  it('is the same for one refusal whose reason carries a measurement that changed (sameAs)', () => {
    const base = { source: 'router' as const, subject: 'omni.in.webhook.site.3', code: 'too_large', payload: '{"id":"e1"}', sameAs: 'too_large' };
    expect(letterId('router', { ...base, reason: 'the ticket event of T-1 would be 1032138 bytes' })).toBe(letterId('router', { ...base, reason: 'the ticket event of T-1 would be 1032999 bytes' }));
    const { sameAs: _, ...plain } = base;
    expect(letterId('router', { ...plain, reason: 'a' })).not.toBe(letterId('router', { ...plain, reason: 'b' }));
  });

  it('keeps nearly all that fits when escaping grows the payload (quotes, line breaks, Cyrillic)', () => {
    const payload = JSON.stringify({ text: 'Строка "с кавычками"\n'.repeat(20_000) });
    const cap = 200_000;
    const letter = encodeLetter('router', { source: 'router', subject: 's', code: 'c', reason: 'r', payload }, cap, new Date().toISOString());
    expect(letter.truncated).toBe(true);
    const escaped = Buffer.byteLength(JSON.stringify(letter.payload));
    expect(escaped).toBeLessThanOrEqual(cap);
    expect(escaped).toBeGreaterThan(cap * 0.9);
  });
});
