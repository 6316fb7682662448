/**
 * An external nats-server (2.9.10) whose JetStream volume fills up under a running gateway: its
 * file store deadlocks, every JetStream request times out, the connection stays up. Loops that
 * need JetStream keep failing with timeouts; /healthz counted them once the connection had been up
 * a minute and flapped to 503 for as long as the disk stayed full (an outside trial: every
 * 10–30 s for minutes), though a restart of the gateway cannot mend the server and /readyz already
 * named the cause. Now liveness holds while JetStream answers neither the gateway's connection nor
 * a new one (src/core/jetstream-availability.ts), and says why next to the failed loops.
 *
 * Needs to mount a tmpfs (root, or CAP_SYS_ADMIN): skipped, and says so, where it cannot.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { natsServerBinary, readPort } from '../helpers/nats-server.js';
import { monitorApi, monitorHeaders, spawnGateway, writeConfig, type GatewayProcess } from '../helpers/process.js';
import { freePort } from '../helpers/ports.js';
import { testTempDir } from '../helpers/temp-dirs.js';
import { fillVolume, mountSmallVolume } from '../helpers/volume.js';

const small = mountSmallVolume('omnigate-extfull-');
const volume = small.path;
const mounted = small.mounted;
const secret = '0123456789abcdef-extfull-secret';
let gw: GatewayProcess | undefined;
let nats: ChildProcess | undefined;

afterAll(async () => {
  // SIGKILL both: a 2.9.10 server wedged by a full disk no longer stops on SIGTERM, and the
  // gateway's stop would wait on it.
  await gw?.kill('SIGKILL');
  if (nats && nats.exitCode === null && nats.signalCode === null) {
    const exited = new Promise((r) => nats!.once('exit', r));
    nats.kill('SIGKILL');
    await exited;
  }
  small.remove();
});

interface Loop {
  name: string;
  state: string;
  restartCures: boolean;
  lastErrorAt?: string;
  dependencyDown?: string;
}

describe.skipIf(!mounted)('external nats-server whose JetStream volume fills up', () => {
  it('/healthz stays 200 while JetStream answers nobody, with the loops failing for it listed and the reason; /readyz names the cause', async () => {
    const portsDir = testTempDir('omnigate-extfull-ports-');
    nats = spawn(natsServerBinary(), ['-js', '-sd', join(volume, 'js'), '-a', '127.0.0.1', '-p', '-1', '--ports_file_dir', portsDir], { stdio: ['ignore', 'ignore', 'pipe'] });
    let natsErr = '';
    nats.stderr?.on('data', (d: Buffer) => (natsErr = (natsErr + d.toString()).slice(-4000)));
    const natsPort = await readPort(portsDir, nats);
    const port = await freePort();
    const file = writeConfig({
      nats: { url: `nats://127.0.0.1:${natsPort}` },
      database: { dataDir: testTempDir('omnigate-extfull-sql-') },
      // OMNI_DLQ's reservation must fit the small volume.
      deadLetters: { maxBytes: '8MB' },
      http: { host: '127.0.0.1', port },
      api: monitorApi,
      connectors: [{ type: 'webhook', account: 'site', secret: '${SITE_SECRET}' }],
    });
    gw = spawnGateway(file, { env: { SITE_SECRET: secret } });
    await gw.started;
    // The connection is up from here on: past a minute, a loop failing with NATS timeouts was counted.
    const connectedBy = Date.now();
    const base = `http://127.0.0.1:${port}`;
    const post = async (messageId: string, text: string) =>
      (await fetch(`${base}/connectors/webhook/site/messages`, {
        method: 'POST',
        headers: { authorization: `Bearer ${secret}` },
        body: JSON.stringify({ messageId, conversationId: `conv-${messageId}`, sender: { id: `client-${messageId}` }, text }),
        signal: AbortSignal.timeout(60_000),
      })).status;
    for (let i = 0; i < 3; i++) expect(await post(`before-${i}`, `Сообщение ${i}`)).toBe(202);

    fillVolume(join(volume, 'filler'));
    // The first write that finds no room wedges 2.9's file store: intake answers 503 from then on.
    const big = 'Ж'.repeat(100_000);
    let refused = 0;
    for (let i = 0; i < 20 && refused === 0; i++) if ((await post(`full-${i}`, `${i} ${big}`)) === 503) refused++;
    expect(refused, gw.output().slice(-2000)).toBe(1);

    // Sample both probes while a loop that a restart would otherwise be asked to cure is failed
    // with NATS timeouts, more than a minute after the connection came up (what /healthz counted).
    const samples: Array<{ status: number; body: Record<string, unknown> }> = [];
    let reasons: string[] = [];
    const deadline = Date.now() + 240_000;
    while (samples.length < 10 && Date.now() < deadline) {
      const ready = (await (await fetch(`${base}/readyz`, { headers: monitorHeaders, signal: AbortSignal.timeout(10_000) })).json()) as { reasons?: string[]; loops: Loop[]; nats: { connected: boolean } };
      const counted = ready.loops.filter((l) => l.state === 'failed' && l.restartCures && l.dependencyDown === 'nats' && Date.parse(l.lastErrorAt ?? '') > connectedBy + 65_000);
      if (ready.nats.connected && counted.length) {
        reasons = ready.reasons ?? [];
        const res = await fetch(`${base}/healthz`, { headers: monitorHeaders, signal: AbortSignal.timeout(10_000) });
        samples.push({ status: res.status, body: (await res.json()) as Record<string, unknown> });
      }
      await new Promise((r) => setTimeout(r, 1000));
    }
    expect(samples.length, `no loop failed with NATS timeouts a minute after the start:\n${gw.output().slice(-3000)}\n${natsErr}`).toBe(10);
    expect(reasons.join('; ')).toMatch(/JetStream not answering while NATS is connected/);
    expect(samples.filter((s) => s.status !== 200), JSON.stringify(samples.find((s) => s.status !== 200))).toEqual([]);
    // Said next to the failed loops: why they do not count.
    const listed = samples.find((s) => s.body.failedLoops);
    expect(listed?.body).toMatchObject({ status: 'ok', jetStream: { available: false, reason: expect.stringMatching(/does not answer, on this connection nor on a new one/) } });
    expect(gw.output()).toContain('JetStream is not available to any client while NATS is connected');
  }, 360_000);
});
