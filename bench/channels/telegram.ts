/**
 * Telegram round trip: update in (stand-in Bot API, telegraf polling) → ticket → reply command →
 * sendMessage at the stand-in. Latency per message from queuing the update to its sendMessage.
 */
import { startGateway } from '../../test/helpers/gateway.js';
import { FakeBotApi } from '../../test/connectors/telegram/bot-api.js';
import { percentile, type ChannelBenchOptions, type ChannelBenchResult } from '../types.js';

const TOKEN = '123456:BENCH-token-abcdefghijklmnop';

export async function run(opts: ChannelBenchOptions): Promise<ChannelBenchResult> {
  const n = Math.max(50, Math.round(500 * opts.scale));
  const api = new FakeBotApi(TOKEN);
  await api.start();
  const gw = await startGateway(
    { log: { level: 'warn' }, connectors: [{ type: 'telegram', account: 'bench', token: '${TG}', apiRoot: api.apiRoot, pollTimeoutS: 1, pacing: { privateChatIntervalMs: 0, groupIntervalMs: 0, perSecond: 100000 } }] },
    { env: { TG: TOKEN } },
  );
  try {
    const queuedAt = new Map<string, number>();
    const latencies: number[] = [];
    let done = 0;
    let finish!: () => void;
    const finished = new Promise<void>((r) => (finish = r));
    const sub = gw.nc.subscribe('omni.events.ticket.message');
    void (async () => {
      for await (const m of sub) {
        const e = m.json<{ ticketId: string }>();
        void gw.request('omni.cmd.reply', { ticketId: e.ticketId, text: 'Ответ оператора' });
      }
    })();
    const t0 = performance.now();
    void (async () => {
      for (;;) {
        const call = await api.waitForCall((c) => c.method === 'sendMessage' && !(c as { counted?: boolean }).counted, 60_000);
        (call as { counted?: boolean }).counted = true;
        const started = queuedAt.get(String(call.params.chat_id));
        if (started !== undefined) latencies.push(call.at - started);
        if (++done >= n) return finish();
      }
    })();
    for (let i = 0; i < n; i++) {
      const chat = 900_000 + i;
      queuedAt.set(String(chat), Date.now());
      api.push({ message: { message_id: i + 1, date: Math.floor(Date.now() / 1000), chat: { id: chat, type: 'private' }, from: { id: chat, first_name: 'Клиент' }, text: 'Здравствуйте, не работает оплата' } });
    }
    await finished;
    const seconds = (performance.now() - t0) / 1000;
    sub.unsubscribe();
    latencies.sort((a, b) => a - b);
    return {
      name: 'telegram round trip (update → ticket → reply → sendMessage)',
      events: n,
      per_s: n / seconds,
      p50_ms: percentile(latencies, 50),
      p99_ms: percentile(latencies, 99),
      note: 'one new chat per message, pacing off',
    };
  } finally {
    await gw.stop();
    await api.stop();
  }
}
