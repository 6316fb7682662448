/**
 * The partition function is part of the bus layout (outside publishers compute it too) and the
 * partition count is fixed per deployment: both must hold across versions and starts.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Bus } from '../../src/core/bus.js';
import { PartitionCountError } from '../../src/core/bus-provision.js';
import { createLogger } from '../../src/core/logger.js';
import { orderKey, partitionOf } from '../../src/core/subjects.js';
import { startNats, type TestNats } from '../helpers/nats-server.js';

let nats: TestNats;
beforeAll(async () => {
  nats = await startNats();
});
afterAll(async () => nats?.stop());

const options = (partitions: number) => ({ url: nats.url, replicas: 1, duplicateWindowMs: 120_000, retentionMs: 86_400_000, dedupTtlMs: 86_400_000, leaseTtlMs: 3000, partitions });

describe('inbound partitions', () => {
  it('hashes an order key the same way every time (FNV-1a 32 of the UTF-8 bytes)', () => {
    expect(partitionOf('', 32)).toBe(0x811c9dc5 % 32);
    expect(partitionOf('a', 1 << 30)).toBe(0xe40c292c % (1 << 30));
    const chat = orderKey({ channel: 'telegram', account: 'main', conversation: { id: '42' } });
    expect(partitionOf(chat, 32)).toBe(partitionOf(chat, 32));
    // Mail is ordered by sender, whatever the case of the address.
    const a = orderKey({ channel: 'email', account: 'support', conversation: { id: 'x' }, email: { from: 'Anna@Example.com' } });
    const b = orderKey({ channel: 'email', account: 'support', conversation: { id: 'y' }, email: { from: 'anna@example.com' } });
    expect(a).toBe(b);
  });

  it('fixes the count at the first start and refuses another one later, naming the stored count', async () => {
    const log = createLogger({ level: 'silent' });
    const first = await Bus.connect(options(16), log);
    await first.provision();
    expect(first.partitions).toBe(16);
    expect(first.inboundSubject({ channel: 'webhook', account: 'site', conversation: { id: 'c1' } })).toMatch(/^omni\.in\.webhook\.site\.\d+$/);
    await first.close();
    const second = await Bus.connect(options(32), log);
    await expect(second.provision()).rejects.toThrow(PartitionCountError);
    await expect(second.provision()).rejects.toThrow(/router\.partitions is 32, but this deployment was provisioned with 16 partitions/);
    await second.close();
  });
});
