/**
 * Telegram round trip: update in (stand-in Bot API, telegraf client, our polling loop) → ticket →
 * reply command → sendMessage at the stand-in, one new private chat per message.
 *  - throughput: a burst of N updates queued at once; messages/s = N / (first queued → last sendMessage).
 *  - latency: updates paced well below that rate; p50/p99 from queuing the update to its sendMessage
 *    (includes up to one long-poll turn-around, as in production).
 */
import { startGateway } from '../../test/helpers/gateway.js';
import { FakeBotApi, type RecordedCall } from '../../test/connectors/telegram/bot-api.js';
import { Background, answerEveryMessage } from './background.js';
import { percentile, type ChannelBenchOptions, type ChannelBenchResult } from '../types.js';

const TOKEN = '123456:BENCH-token-abcdefghijklmnop';
const PACED_PER_S = 50;

export async function run(opts: ChannelBenchOptions): Promise<ChannelBenchResult> {
  const burst = Math.max(50, Math.round(500 * opts.scale));
  const paced = Math.max(20, Math.round(200 * opts.scale));
  const api = new FakeBotApi(TOKEN);
  await api.start();
  const gw = await startGateway(
    { log: { level: 'warn' }, connectors: [{ type: 'telegram', account: 'bench', token: '${TG}', apiRoot: api.apiRoot, pollTimeoutS: 1, pacing: { privateChatIntervalMs: 0, groupIntervalMs: 0, perSecond: 100000 } }] },
    { env: { TG: TOKEN } },
  );
  const background = new Background();
  const sub = answerEveryMessage(gw, background, 'Ответ оператора');
  try {
    let nextChat = 900_000;
    const phase = async (n: number, gapMs: number) => {
      const queuedAt = new Map<string, number>();
      const latencies: number[] = [];
      const done = collect(api, queuedAt, latencies, n);
      const t0 = Date.now();
      for (let i = 0; i < n; i++) {
        const chat = nextChat++;
        queuedAt.set(String(chat), Date.now());
        api.push({ message: { message_id: 1, date: Math.floor(Date.now() / 1000), chat: { id: chat, type: 'private' }, from: { id: chat, first_name: 'Клиент' }, text: 'Здравствуйте, не работает оплата' } });
        if (gapMs > 0) await new Promise((r) => setTimeout(r, gapMs));
      }
      const lastAt = await done;
      return { seconds: (lastAt - t0) / 1000, latencies: latencies.sort((a, b) => a - b) };
    };
    await phase(20, 0); // warm-up: JIT, consumers, first tickets
    const throughput = await phase(burst, 0);
    const latency = await phase(paced, 1000 / PACED_PER_S);
    background.check();
    return {
      name: 'telegram round trip (update → ticket → reply → sendMessage)',
      events: burst,
      per_s: burst / throughput.seconds,
      p50_ms: percentile(latency.latencies, 50),
      p99_ms: percentile(latency.latencies, 99),
      note: `throughput: burst of ${burst} new chats; latency: ${paced} updates at ${PACED_PER_S}/s (burst p50 ${percentile(throughput.latencies, 50)} ms is queueing); pacing off`,
    };
  } finally {
    sub.unsubscribe();
    await gw.stop();
    await api.stop();
  }
}

/** Resolves with the time of the n-th sendMessage to one of the phase's chats. */
function collect(api: FakeBotApi, queuedAt: Map<string, number>, latencies: number[], n: number): Promise<number> {
  const seen = new Set<RecordedCall>();
  return new Promise((resolve, reject) => {
    const next = (): void => {
      api
        .waitForCall((c) => c.method === 'sendMessage' && !seen.has(c) && queuedAt.has(String(c.params.chat_id)), 60_000)
        .then((call) => {
          seen.add(call);
          latencies.push(call.at - queuedAt.get(String(call.params.chat_id))!);
          if (seen.size >= n) resolve(call.at);
          else next();
        }, reject);
    };
    next();
  });
}
