/**
 * The embedded server on a volume that fills up (a tmpfs of its own): nats-server 2.9.10
 * deadlocks its file store at the first write that finds no space, and newer servers turn
 * JetStream off; either way intake answers 503 and, before, went on answering it after the space
 * was freed, until someone restarted the gateway. Now the gateway restarts its server once
 * there is room, and nothing it had accepted is lost or logged twice.
 *
 * Needs to mount a tmpfs (root, or CAP_SYS_ADMIN): skipped, and says so, where it cannot.
 */
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { connect } from '@nats-io/transport-node';
import { afterAll, describe, expect, it } from 'vitest';
import { readEmbeddedAccess } from '../../src/core/embedded-access.js';
import { natsConnectionOptions } from '../../src/core/nats-access.js';
import { readInboundLog } from '../helpers/events.js';
import { natsServerBinary } from '../helpers/nats-server.js';
import { monitorApi, monitorHeaders, spawnGateway, writeConfig, type GatewayProcess } from '../helpers/process.js';
import { freePort } from '../helpers/ports.js';
import { testTempDir } from '../helpers/temp-dirs.js';
import { fillVolume, mountSmallVolume } from '../helpers/volume.js';

const root = new URL('../..', import.meta.url).pathname;
const small = mountSmallVolume('omnigate-diskfull-');
const volume = small.path;
const mounted = small.mounted;
const secret = '0123456789abcdef-disk-secret';
let gw: GatewayProcess | undefined;

afterAll(async () => {
  await gw?.kill('SIGKILL');
  small.remove();
});

describe.skipIf(!mounted)('embedded nats-server on a volume that fills up', () => {
  it('restarts its server once space is freed: intake takes messages again, none accepted is lost or doubled', async () => {
    const port = await freePort();
    const dataDir = join(volume, 'data');
    const sqlDir = testTempDir('omnigate-diskfull-sql-'); // removed after the file, passed or not
    const file = writeConfig({
      nats: { embedded: { dataDir, binary: natsServerBinary(), restartStuckJetStream: '10s' } },
      // Only JetStream on the small volume; OMNI_DLQ's reservation must fit it.
      database: { dataDir: sqlDir },
      deadLetters: { maxBytes: '8MB' },
      // Not what this test is about: a loaded 2-core machine once took over 10 s to close PGlite.
      shutdownTimeout: '30s',
      http: { host: '127.0.0.1', port },
      api: monitorApi,
      connectors: [{ type: 'webhook', account: 'form', secret: '${FORM_SECRET}' }],
    });
    gw = spawnGateway(file, { entry: 'dist', env: { FORM_SECRET: secret }, root });
    await gw.started;
    const accepted: string[] = [];
    const post = async (messageId: string, text: string) => {
      const res = await fetch(`http://127.0.0.1:${port}/connectors/webhook/form/messages`, {
        method: 'POST',
        headers: { authorization: `Bearer ${secret}` },
        body: JSON.stringify({ messageId, conversationId: `conv-${accepted.length % 3}`, sender: { id: `client-${accepted.length % 3}` }, text }),
        signal: AbortSignal.timeout(60_000),
      });
      if (res.status === 202) accepted.push(`webhook:form:${messageId}`);
      return res.status;
    };
    for (let i = 0; i < 3; i++) expect(await post(`before-${i}`, `Сообщение ${i}`)).toBe(202);

    fillVolume(join(volume, 'filler'));
    // The first write that finds no room wedges (2.9) or switches off (2.10+) JetStream: 503 from then on.
    const big = 'Ж'.repeat(100_000);
    let refused = 0;
    for (let i = 0; i < 20 && refused === 0; i++) if ((await post(`full-${i}`, `${i} ${big}`)) === 503) refused++;
    expect(refused, gw.output().slice(-2000)).toBe(1);
    // Readiness says what is wrong: JetStream silent (2.9's deadlock) or off (newer servers), NATS connected.
    const ready = (await (await fetch(`http://127.0.0.1:${port}/readyz`, { headers: monitorHeaders })).json()) as { status: string; reasons: string[]; nats: { connected: boolean } };
    expect(ready.status).toBe('not ready');
    expect(ready.nats.connected).toBe(true);
    expect(ready.reasons.join('; ')).toMatch(/JetStream not answering while NATS is connected|streams not listed/);

    rmSync(join(volume, 'filler'));
    const deadline = Date.now() + 90_000;
    let after = 0;
    while (Date.now() < deadline && (await post(`after-${after}`, `После ${after}`)) !== 202) await new Promise((r) => setTimeout(r, 1000));
    for (after = 1; after < 3; after++) expect(await post(`after-${after}`, `После ${after}`)).toBe(202);
    const out = gw.output();
    expect(out).toContain('restarting embedded nats-server');
    expect(out).toContain('embedded nats-server restarted');
    const metricsText = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
    const restarts = [...metricsText.matchAll(/^omnigate_embedded_nats_restarts_total\{reason="(?:silent|off)"\} (\d+)$/gm)].reduce((n, m) => n + Number(m[1]), 0);
    expect(restarts).toBeGreaterThanOrEqual(1);

    // Every message answered 202 is in a ticket's log exactly once (a 503 may or may not have been stored).
    const nc = await connect(natsConnectionOptions(readEmbeddedAccess(dataDir)!));
    try {
      let logged: string[] = [];
      const until = Date.now() + 30_000;
      while (Date.now() < until) {
        logged = (await readInboundLog(nc)).map((e) => e.eventId);
        if (accepted.every((id) => logged.includes(id))) break;
        await new Promise((r) => setTimeout(r, 500));
      }
      expect(accepted.filter((id) => !logged.includes(id))).toEqual([]);
      expect(logged.length).toBe(new Set(logged).size);
    } finally {
      await nc.close();
    }
    expect(await gw.kill('SIGTERM'), gw.output().slice(-2000)).toBe(0);
    gw = undefined;
  }, 240_000);
});
