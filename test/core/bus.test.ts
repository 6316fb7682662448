import { PassThrough } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Bus } from '../../src/core/bus.js';
import { createLogger } from '../../src/core/logger.js';
import { Buckets, Streams } from '../../src/core/subjects.js';
import { acquireLease } from '../../src/core/lease.js';
import { Kvm } from '@nats-io/kv';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { natsServerBinary, readPort, startNats, startNatsWithConfig, type TestNats } from '../helpers/nats-server.js';

let nats: TestNats;
const log = createLogger({ level: 'silent' });
const options = (url: string, over: Partial<Parameters<typeof Bus.connect>[0]> = {}) => ({
  url, replicas: 1, duplicateWindowMs: 120_000, retentionMs: 7 * 86_400_000, dedupTtlMs: 86_400_000, leaseTtlMs: 1_500, ...over,
});

beforeAll(async () => {
  nats = await startNats();
});
afterAll(async () => nats?.stop());

describe('bus provisioning', () => {
  it('on a server with less JetStream storage than the dead-letter stream reserves, fails naming the stream, its reservation and the settings', async () => {
    // A small volume: JetStream's limit is by default most of the free disk, and OMNI_DLQ
    // reserves its max_bytes (1 GB by default) up front. The start failed with nats-server's
    // "insufficient storage resources available", naming nothing.
    const small = await startNatsWithConfig((dir) => `jetstream { store_dir: "${join(dir, 'small')}", max_file_store: 100MB }`);
    try {
      const bus = await Bus.connect(options(small.url), log);
      try {
        const failed = await bus.provision().then(() => undefined, (e: unknown) => e as Error);
        expect(failed?.message).toMatch(/^stream OMNI_DLQ: nats-server has not enough JetStream storage for it \(.*insufficient.*\); it reserves its max_bytes, 1074 MB \(deadLetters.maxBytes\), up front\..*nats\.embedded\.dataDir.*lower deadLetters\.maxBytes$/);
        // With a reservation that fits, the same server takes every stream.
        const fits = await Bus.connect(options(small.url, { deadLetters: { maxBytes: 10_000_000 } } as never), log);
        await fits.provision();
        await fits.close();
      } finally {
        await bus.close();
      }
    } finally {
      await small.stop();
    }
  });

  it('creates every stream, bucket and the object store, and is idempotent across starts and replicas', async () => {
    const a = await Bus.connect(options(nats.url), log);
    const b = await Bus.connect(options(nats.url), log);
    await Promise.all([a.provision(), b.provision()]);
    await a.provision();
    const streams: string[] = [];
    for await (const s of a.jsm.streams.names()) streams.push(s);
    for (const s of Object.values(Streams)) expect(streams).toContain(s);
    // The guard bucket exists only where the start-up self-check found compare-and-set unsafe.
    for (const bucket of Object.values(Buckets).filter((b) => b !== Buckets.casGuards)) expect(streams).toContain(`KV_${bucket}`);
    expect(streams).not.toContain(`KV_${Buckets.casGuards}`);
    expect(streams).toContain('OBJ_omni_media');
    expect(a.serverVersion).toMatch(/^2\.\d+\.\d+/);
    await Promise.all([a.close(), b.close()]);
  });

  it('takes replicas that start together on a fresh server: every one provisions (they raced creating the same bucket)', async () => {
    // Seen in CI: the loser of two concurrent bucket creations got "subjects overlap with an
    // existing stream" and its start failed. Several rounds of six, each on a new server.
    for (let round = 0; round < 3; round++) {
      const fresh = await startNats();
      const buses = await Promise.all(Array.from({ length: 6 }, () => Bus.connect(options(fresh.url), log)));
      try {
        const failed = (await Promise.all(buses.map((b) => b.provision().then(() => undefined, (e: unknown) => e as Error)))).filter(Boolean);
        expect(failed.map((e) => e!.message)).toEqual([]);
      } finally {
        await Promise.all(buses.map((b) => b.close()));
        await fresh.stop();
      }
    }
  });

  it('updates a stream whose settings drifted from the config', async () => {
    const bus = await Bus.connect(options(nats.url, { duplicateWindowMs: 300_000 }), log);
    await bus.provision();
    const info = await bus.jsm.streams.info(Streams.inbound);
    expect(info.config.duplicate_window).toBe(300_000 * 1_000_000);
    await bus.close();
  });

  it('follows a changed leaseTtl and dedupTtl on an existing deployment (the buckets kept the TTL they were made with)', async () => {
    const short = await Bus.connect(options(nats.url, { leaseTtlMs: 5_000, dedupTtlMs: 60_000 }), log);
    await short.provision();
    expect((await short.jsm.streams.info('KV_omni_leases')).config.max_age).toBe(5_000 * 1_000_000);
    await short.close();
    const longer = await Bus.connect(options(nats.url, { leaseTtlMs: 15_000, dedupTtlMs: 3_600_000 }), log);
    await longer.provision();
    const leases = (await longer.jsm.streams.info('KV_omni_leases')).config;
    expect(leases.max_age).toBe(15_000 * 1_000_000);
    expect(leases.duplicate_window).toBeLessThanOrEqual(leases.max_age);
    expect((await longer.jsm.streams.info('KV_omni_dedup')).config.max_age).toBe(3_600_000 * 1_000_000);
    await longer.close();
  });

  it('turns on direct gets for a hot bucket an older server or another tool created without them', async () => {
    const fresh = await startNats();
    try {
      const bus = await Bus.connect(options(fresh.url), log);
      await new Kvm(bus.js).create(Buckets.threads, { history: 1, allow_direct: false });
      expect((await bus.jsm.streams.info(`KV_${Buckets.threads}`)).config.allow_direct).toBe(false);
      await bus.provision();
      expect((await bus.jsm.streams.info(`KV_${Buckets.threads}`)).config.allow_direct).toBe(true);
      await bus.hotKv.threads.create('conv.x', 'T-1');
      expect((await bus.hotKv.threads.get('conv.x'))?.string()).toBe('T-1');
      await bus.close();
    } finally {
      await fresh.stop();
    }
  });

  it('gives a lease to one holder at a time and hands it over when the holder stops renewing', async () => {
    const bus = await Bus.connect(options(nats.url), log);
    await bus.provision();
    const first = await acquireLease(bus.kv.leases, 'telegram.bot.intake', { ttlMs: 1_500, holder: 'replica-a' });
    const abort = new AbortController();
    let secondGot = false;
    const second = acquireLease(bus.kv.leases, 'telegram.bot.intake', { ttlMs: 1_500, holder: 'replica-b', signal: abort.signal }).then((l) => {
      secondGot = true;
      return l;
    });
    await new Promise((r) => setTimeout(r, 2_000)); // longer than the TTL: renewals keep it with a
    expect(secondGot).toBe(false);
    await first.release();
    const lease = await second;
    expect(secondGot).toBe(true);
    await lease.release();
    await bus.close();
  });
});

describe('the first connection', () => {
  it('waits for a NATS that is not there yet, saying so, and gives up after its limit (it waited silently for ever)', async () => {
    const out = new PassThrough();
    const lines: string[] = [];
    out.on('data', (d: Buffer) => lines.push(...d.toString().split('\n').filter(Boolean)));
    const loud = createLogger({ level: 'warn', destination: out });
    const started = performance.now();
    const url = 'nats://127.0.0.1:9'; // nothing listens on the discard port
    await expect(Bus.connect(options(url, { firstConnectLimitMs: 2_500 }), loud)).rejects.toThrow(/did not accept a connection within 2\.5 s/);
    expect(performance.now() - started).toBeGreaterThanOrEqual(2_400);
    expect(lines.map((l) => JSON.parse(l) as { msg: string; servers: string }).filter((l) => l.msg === 'waiting for NATS to accept a connection')[0]).toMatchObject({ servers: url });
  });

  it('waits for JetStream to answer within the same limit and names the step (a start just after a cluster restart exited with a bare "timeout")', async () => {
    // A server that accepts connections but has no JetStream: as a cluster electing its leaders looks.
    const dir = mkdtempSync(join(tmpdir(), 'omnigate-nats-nojs-'));
    const child = spawn(natsServerBinary(), ['-a', '127.0.0.1', '-p', '-1', '--ports_file_dir', dir], { stdio: 'ignore' });
    try {
      const url = `nats://127.0.0.1:${await readPort(dir, child)}`;
      const out = new PassThrough();
      const lines: string[] = [];
      out.on('data', (d: Buffer) => lines.push(...d.toString().split('\n').filter(Boolean)));
      await expect(Bus.connect(options(url, { firstConnectLimitMs: 3_000 }), createLogger({ level: 'warn', destination: out }))).rejects.toThrow(/the JetStream API: JetStream did not answer within 3 s/);
      expect(lines.map((l) => JSON.parse(l) as { msg: string; step: string }).find((l) => l.msg === 'waiting for JetStream to answer')).toMatchObject({ step: 'the JetStream API' });
    } finally {
      child.kill('SIGTERM');
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
