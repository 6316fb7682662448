import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startGateway, type TestGateway } from '../helpers/gateway.js';
import { chatMessage, publishEvent } from '../helpers/events.js';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { deadLetters, toolNatsAccess } from '../../src/dlq.js';
import { testTempDir } from '../helpers/temp-dirs.js';
import { loadConfig } from '../../src/core/config.js';

let gw: TestGateway;
beforeAll(async () => {
  gw = await startGateway({});
});
afterAll(async () => gw?.stop());

describe('dead-letter tooling', () => {
  it('says which NATS it could not reach and which setting named it', async () => {
    const nats = loadConfig(undefined, { OMNIGATE_NATS__URL: 'nats://127.0.0.1:59' }).config.nats;
    await expect(deadLetters(nats, { limit: 1 } as Parameters<typeof deadLetters>[1])).rejects.toThrow(/^cannot reach NATS at nats:\/\/127\.0\.0\.1:59 \(nats\.url\): /);
  });

  it('reaches the embedded server with the credential in nats.url, and names its address without the password', async () => {
    const dataDir = testTempDir('omnigate-dlq-url-');
    const password = 'f'.repeat(48);
    writeFileSync(join(dataDir, 'nats.url'), `nats://omnigate:${password}@127.0.0.1:59\n`, { mode: 0o600 });
    const nats = loadConfig(undefined, { OMNIGATE_NATS__EMBEDDED__DATA_DIR: dataDir }).config.nats;
    expect(toolNatsAccess(nats)).toEqual({ url: 'nats://127.0.0.1:59', user: 'omnigate', pass: password });
    const err = await deadLetters(nats, { limit: 1 } as Parameters<typeof deadLetters>[1]).then(() => undefined, (e: unknown) => e as Error);
    expect(err?.message).toMatch(/^cannot reach NATS at nats:\/\/127\.0\.0\.1:59 \(the embedded server's address in .*nats\.url: is the gateway running\?\): /);
    expect(err?.message).not.toContain(password);
  });

  it('lists parked events with their reason and replays them once the cause is gone', async () => {
    const original = chatMessage({ chat: 'late-chat', id: 'late-1' });
    const edit = {
      v: 1, type: 'message.edited', id: 'webhook:site:edit:late-1:1', channel: 'webhook', account: 'site',
      conversation: original.conversation, sender: original.sender, targetPlatformMessageId: 'late-1', text: 'правка',
      platform: { messageId: 'late-1' }, receivedAt: new Date().toISOString(),
    };
    await publishEvent(gw.nc, edit); // the edit overtook its message: nothing to attach it to yet
    await gw.waitForStreamMessage('OMNI_DLQ', 'omni.dlq.router', (d: any) => d.reason.includes('unknown message late-1'));

    const config = loadConfig(undefined, { OMNIGATE_NATS__URL: gw.nats.url }).config.nats;
    const lines: string[] = [];
    const listed = await deadLetters(config, { source: 'router', limit: 100, replay: false, out: (l) => lines.push(l) });
    expect(listed.listed).toBeGreaterThan(0);
    expect(lines.join('\n')).toMatch(/router\tomni\.in\.webhook\.site(\.\d+)?\tmessage\.edited for unknown message late-1/);

    await publishEvent(gw.nc, original);
    const created = await gw.waitForEvent((e) => e.type === 'ticket.message' && (e.entry as any).event.id === original.id);
    const replay = await deadLetters(config, { source: 'router', limit: 100, replay: true, out: () => {} });
    expect(replay.replayed).toBeGreaterThan(0);
    await gw.waitForEvent((e) => e.type === 'ticket.edited' && e.ticketId === created.ticketId);
    // Replaying again changes nothing, and says so: JetStream dropped the repeat inside its duplicate window.
    const again: string[] = [];
    const second = await deadLetters(config, { source: 'router', limit: 100, replay: true, out: (l) => again.push(l) });
    expect(second.replayed).toBe(0);
    expect(again.join('\n')).toMatch(/was replayed less than the duplicate window \(nats\.duplicateWindow\) ago and JetStream dropped this repeat: nothing published/);
    const log = await gw.gateway.router!.store.readLog(created.ticketId);
    expect(log.map((l) => l.entry.kind)).toEqual(['inbound', 'edited']);
  });
});
