import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connect, headers as makeHeaders, type NatsConnection } from '@nats-io/transport-node';
import { jetstream, jetstreamManager, JetStreamApiError } from '@nats-io/jetstream';
import { Kvm } from '@nats-io/kv';
import { JsPipeline, PipelinedKv, plainAck } from '../../src/core/js-pipeline.js';
import { isCasConflict } from '../../src/core/bus.js';
import { startNats, type TestNats } from '../helpers/nats-server.js';

let nats: TestNats;
let nc: NatsConnection;
let pipe: JsPipeline;

beforeAll(async () => {
  nats = await startNats();
  nc = await connect({ servers: nats.url });
  const jsm = await jetstreamManager(nc);
  await jsm.streams.add({ name: 'PIPE', subjects: ['pipe.>'], duplicate_window: 60_000_000_000 });
  pipe = new JsPipeline(nc, 2_000);
});
afterAll(async () => {
  pipe?.close();
  await nc?.close();
  await nats?.stop();
});

describe('JsPipeline publish', () => {
  it('acks stored messages in order, reports duplicates by Nats-Msg-Id, and sends many at once', async () => {
    const acks = await Promise.all(Array.from({ length: 500 }, (_, i) => pipe.publish('pipe.a', `сообщение ${i}`, { msgID: `m-${i}` })));
    expect(acks.map((a) => a.stream)).toEqual(Array(500).fill('PIPE'));
    expect(new Set(acks.map((a) => a.seq)).size).toBe(500);
    const again = await pipe.publish('pipe.a', 'сообщение 0', { msgID: 'm-0' });
    expect(again).toMatchObject({ duplicate: true, seq: acks[0]!.seq });
  });

  it('enforces the expected last subject sequence with the client library’s error', async () => {
    const first = await pipe.publish('pipe.cas', 'v1', { expectedLastSubjectSeq: 0 });
    const conflict = await pipe.publish('pipe.cas', 'v1 again', { expectedLastSubjectSeq: 0 }).catch((e: unknown) => e);
    expect(conflict).toBeInstanceOf(JetStreamApiError);
    expect(isCasConflict(conflict)).toBe(true);
    await expect(pipe.publish('pipe.cas', 'v2', { expectedLastSubjectSeq: first.seq })).resolves.toMatchObject({ duplicate: false });
  });

  it('reads the acks of the server it talks to on the fast path', async () => {
    // A real server's bytes, not made-up ones: its template's spacing differs by version.
    const withId = () => {
      const h = makeHeaders();
      h.set('Nats-Msg-Id', 'probe-1');
      return { headers: h, timeout: 5_000 };
    };
    const reply = await nc.request('pipe.probe', 'x', withId());
    expect(plainAck(reply.data)).toMatchObject({ stream: 'PIPE', duplicate: false });
    const again = await nc.request('pipe.probe', 'x', withId());
    expect(plainAck(again.data)).toMatchObject({ stream: 'PIPE', duplicate: true });
  });

  it('rejects (never throws) a message id the client refuses', async () => {
    const call = pipe.publish('pipe.a', 'x', { msgID: 'bad\r\nid' });
    expect(call).toBeInstanceOf(Promise);
    await expect(call).rejects.toThrow();
  });

  it('names the subject when no stream stores it', async () => {
    await expect(pipe.publish('nowhere.at.all', 'x')).rejects.toThrow(/no stream stores nowhere\.at\.all/);
  });

  it('rejects after its timeout when nothing answers, and keeps working afterwards', async () => {
    // A core subscriber that swallows requests: the publish is "delivered" but never acked.
    const silent = nc.subscribe('silent.>', { callback: () => {} });
    const short = new JsPipeline(nc, 300);
    await expect(short.publish('silent.x', 'x')).rejects.toThrow(/did not answer within 300 ms/);
    await expect(short.publish('pipe.after', 'x')).resolves.toMatchObject({ stream: 'PIPE' });
    short.close();
    silent.unsubscribe();
  });

  it('fails what is in flight when the pipeline closes, and refuses work on a closed connection', async () => {
    const other = await connect({ servers: nats.url });
    const p = new JsPipeline(other, 5_000);
    const silent = other.subscribe('silent2.>', { callback: () => {} });
    const pending = p.publish('silent2.x', 'x');
    await new Promise((r) => setTimeout(r, 20));
    await other.close();
    await expect(pending).rejects.toThrow(/closed/);
    await expect(p.publish('pipe.x', 'x')).rejects.toThrow(/closed/);
    silent.unsubscribe();
  });

  it('refuses work at once after close() on a live connection', async () => {
    const p = new JsPipeline(nc, 5_000);
    p.close();
    await expect(p.publish('pipe.x', 'x')).rejects.toThrow(/pipeline closed/);
  });
});

describe('plainAck', () => {
  const bytes = (s: string) => new TextEncoder().encode(s);
  it('reads the two acks nats-server sends for nearly every publish, as JSON.parse would', () => {
    expect(plainAck(bytes('{"stream":"OMNI_LOG","seq":123456}'))).toEqual({ stream: 'OMNI_LOG', seq: 123456, duplicate: false });
    expect(plainAck(bytes('{"stream":"KV_omni-tickets","seq":7,"duplicate":true}'))).toEqual({ stream: 'KV_omni-tickets', seq: 7, duplicate: true });
    expect(plainAck(bytes('{"stream":"OMNI_LOG","seq":1}'))!.stream).toBe(plainAck(bytes('{"stream":"OMNI_LOG","seq":2}'))!.stream);
    // As nats-server writes them from its template (seen on 2.9.10, and 2.10/2.11 read the same:
    // a space before "seq" and after "duplicate":; later versions drop the first).
    expect(plainAck(bytes('{"stream":"ACKPROBE", "seq":1}'))).toEqual({ stream: 'ACKPROBE', seq: 1, duplicate: false });
    expect(plainAck(bytes('{"stream":"ACKPROBE", "seq":1,"duplicate": true}'))).toEqual({ stream: 'ACKPROBE', seq: 1, duplicate: true });
    expect(plainAck(bytes('{"stream":"ACKPROBE","seq":9,"duplicate": true}'))).toEqual({ stream: 'ACKPROBE', seq: 9, duplicate: true });
  });

  it('leaves everything else to the JSON path (errors, domains, escapes, other key orders, huge numbers)', () => {
    for (const other of [
      '{"error":{"code":400,"err_code":10071,"description":"wrong last sequence: 5"},"stream":"S","seq":0}',
      '{"stream":"S","seq":1,"domain":"hub"}',
      '{"stream":"S\\"x","seq":1}',
      '{"seq":1,"stream":"S"}',
      '{"stream":"S","seq":}',
      '{"stream":"S","seq":1234567890123456}',
      '{"stream":"S","seq":1,"duplicate":false}',
      '{"stream":"S","seq":1} ',
      '{"stream":"S",  "seq":1}',
      '{"stream":"S", "seq":1,"duplicate":  true}',
      '{"stream":"S","seq":1,"duplicate":true,"domain":"hub"}',
      '',
    ]) expect(plainAck(bytes(other)), other).toBeUndefined();
  });
});

describe('PipelinedKv', () => {
  it('reads, creates and updates like @nats-io/kv, including create over a deleted key', async () => {
    const kv = await new Kvm(jetstream(nc)).create('pipekv', { history: 1, allow_direct: true });
    const fast = new PipelinedKv(pipe, 'pipekv');
    expect(await fast.get('absent')).toBeNull();

    const rev = await fast.create('ticket.T-1', JSON.stringify({ status: 'open' }));
    expect((await kv.get('ticket.T-1'))?.revision).toBe(rev);
    expect(isCasConflict(await fast.create('ticket.T-1', '{}').catch((e: unknown) => e))).toBe(true);
    const rev2 = await fast.update('ticket.T-1', JSON.stringify({ status: 'closed' }), rev);
    expect(isCasConflict(await fast.update('ticket.T-1', '{}', rev).catch((e: unknown) => e))).toBe(true);
    const read = await fast.get('ticket.T-1');
    expect(read).toMatchObject({ revision: rev2, operation: 'PUT' });
    expect(read!.json<{ status: string }>().status).toBe('closed');

    await kv.delete('ticket.T-1');
    expect((await fast.get('ticket.T-1'))?.operation).toBe('DEL');
    const rev3 = await fast.create('ticket.T-1', 'reborn');
    expect((await kv.get('ticket.T-1'))?.string()).toBe('reborn');
    expect(rev3).toBeGreaterThan(rev2);
  });
});
