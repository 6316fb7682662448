/**
 * WhatsApp Cloud API round trip: signed webhook in (HMAC over the raw body, checked) → ticket →
 * reply command → Graph `messages` call at the stand-in. Latency per message from the webhook
 * POST to its Graph call. One new customer per message, pacing off.
 */
import { startGateway } from '../../test/helpers/gateway.js';
import { FakeGraphApi, signWebhook, webhookBody } from '../../test/connectors/whatsapp-cloud/graph-api.js';
import { Background, answerEveryMessage } from './background.js';
import { percentile, within, type ChannelBenchOptions, type ChannelBenchResult } from '../types.js';

const PHONE_ID = '106540352242922';
const TOKEN = 'EAAG-bench-access-token-0123456789';
const SECRET = 'bench-app-secret-0123456789';
const IN_FLIGHT = 32;

export async function run(opts: ChannelBenchOptions): Promise<ChannelBenchResult> {
  const n = Math.max(50, Math.round(500 * opts.scale));
  const graph = new FakeGraphApi(TOKEN, PHONE_ID);
  await graph.start();
  const gw = await startGateway(
    {
      log: { level: 'warn' },
      connectors: [{
        type: 'whatsapp-cloud', account: 'bench', phoneNumberId: PHONE_ID, accessToken: '${T}', appSecret: '${S}', verifyToken: 'bench-verify',
        graphApiUrl: graph.base, pacing: { perChatIntervalMs: 0, perSecond: 0 },
      }],
    },
    { env: { T: TOKEN, S: SECRET } },
  );
  const url = `${gw.httpUrl}/connectors/whatsapp-cloud/bench/webhook`;
  try {
    const postedAt = new Map<string, number>();
    const latencies: number[] = [];
    let done = 0;
    let finish!: () => void;
    const finished = new Promise<void>((r) => (finish = r));
    const background = new Background();
    const sub = answerEveryMessage(gw, background, 'Ответ оператора');
    background.run((async () => {
      for (;;) {
        const call = await graph.waitForCall((c) => c.path.endsWith('/messages') && !(c as { counted?: boolean }).counted, 60_000);
        (call as { counted?: boolean }).counted = true;
        const started = postedAt.get(String(call.json?.to));
        if (started !== undefined) latencies.push(call.at - started);
        if (++done >= n) return finish();
      }
    })());
    const t0 = performance.now();
    let next = 0;
    const worker = async () => {
      while (next < n) {
        const i = next++;
        const from = String(79_000_000_000 + i);
        const body = webhookBody(PHONE_ID, {
          contacts: [{ profile: { name: 'Клиент' }, wa_id: from }],
          messages: [{ from, id: `wamid.BENCH${i}-${Date.now()}`, timestamp: String(Math.floor(Date.now() / 1000)), type: 'text', text: { body: 'Здравствуйте, не работает оплата' } }],
        });
        postedAt.set(from, Date.now());
        const res = await fetch(url, { method: 'POST', headers: { 'content-type': 'application/json', 'x-hub-signature-256': signWebhook(SECRET, body) }, body });
        if (res.status !== 200) throw new Error(`webhook answered ${res.status}`);
      }
    };
    await Promise.all(Array.from({ length: IN_FLIGHT }, worker));
    await within(finished, 120_000, () => `only ${done}/${n} replies reached the Graph API within 120 s`);
    const seconds = (performance.now() - t0) / 1000;
    sub.unsubscribe();
    background.check();
    latencies.sort((a, b) => a - b);
    return {
      name: 'whatsapp cloud round trip (signed webhook → ticket → reply → Graph messages)',
      events: n,
      per_s: n / seconds,
      p50_ms: percentile(latencies, 50),
      p99_ms: percentile(latencies, 99),
      note: `one new customer per message, ${IN_FLIGHT} webhook POSTs in flight, pacing off`,
    };
  } finally {
    await gw.stop();
    await graph.stop();
  }
}
