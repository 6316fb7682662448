/**
 * Dead-letter flood: N refused bodies of S bytes posted to the webhook channel with its form
 * secret; reports what the dead-letter stream holds afterwards. `tsx bench/dlq-flood.ts [N] [S]`.
 */
import { startGateway } from '../test/helpers/gateway.js';
import { Streams } from '../src/core/subjects.js';
import { metrics } from '../src/core/metrics.js';

const n = Number(process.argv[2] ?? 2000);
const size = Number(process.argv[3] ?? 100_000);
const secret = 'flood-secret-0123456789';
const gw = await startGateway({ connectors: [{ type: 'webhook', account: 'site', secret }] });
try {
  const body = `{"bad": "${'ж'.repeat(size / 2)}`; // not JSON: refused and parked
  const started = Date.now();
  for (let i = 0; i < n; i += 20) {
    await Promise.all(Array.from({ length: Math.min(20, n - i) }, () =>
      fetch(`${gw.httpUrl}/connectors/webhook/site/messages`, { method: 'POST', headers: { authorization: `Bearer ${secret}` }, body }).then((r) => r.text())));
  }
  const info = await gw.gateway.bus.jsm.streams.info(Streams.deadLetter);
  const counted = (await metrics.parked.get()).values.reduce((a, v) => a + v.value, 0);
  const suppressed = (await metrics.deadLettersSuppressed.get()).values.reduce((a, v) => a + v.value, 0);
  console.log(JSON.stringify({ refusals: n, bodyBytes: Buffer.byteLength(body), seconds: (Date.now() - started) / 1000, counted, suppressed, stored: info.state.messages, streamBytes: info.state.bytes, maxAgeDays: info.config.max_age / 86_400e9, maxBytes: info.config.max_bytes }));
} finally {
  await gw.stop();
}
