/**
 * Zammad helpdesk adapter (stand-in Zammad on 127.0.0.1, `BENCH_ZAMMAD_LATENCY_MS` added to each
 * of its answers as a real Zammad's own time, default 20 ms):
 *  - tickets/s: a burst of N new Telegram chats → N Zammad tickets (first update queued → last
 *    ticket created in Zammad), i.e. router + helpdesk host + adapter + Zammad;
 *  - messages/s: M follow-up messages into those tickets → M customer articles;
 *  - answer → channel latency: agents answer in Zammad (paced), p50/p99 from the article's
 *    creation to the sendMessage at the Telegram stand-in (webhook, command, router, connector);
 *  - the helpdesk's own time: the stand-in's summed answer time for the sync phases, apart.
 */
import { startGateway } from '../../test/helpers/gateway.js';
import { FakeBotApi } from '../../test/connectors/telegram/bot-api.js';
import { ZammadStandin } from '../../test/helpers/zammad-standin.js';
import { percentile, within, type ChannelBenchOptions, type ChannelBenchResult } from '../types.js';
import { Background } from './background.js';

const TG = '123456:BENCH-token-abcdefghijklmnop';
const ZT = 'bench-zammad-token-0123456789';
const SECRET = 'bench-webhook-secret-0123456789';
const ANSWERS_PER_S = 20;

async function until(what: string, probe: () => boolean, ms = 120_000): Promise<number> {
  const deadline = Date.now() + ms;
  while (!probe()) {
    if (Date.now() > deadline) throw new Error(`zammad bench: timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
  return Date.now();
}

export async function run(opts: ChannelBenchOptions): Promise<ChannelBenchResult> {
  const tickets = Math.max(30, Math.round(300 * opts.scale));
  const followUps = tickets;
  const answers = Math.max(20, Math.round(100 * opts.scale));
  const api = new FakeBotApi(TG);
  await api.start();
  const zammad = new ZammadStandin({ token: ZT });
  zammad.latencyMs = Number(process.env.BENCH_ZAMMAD_LATENCY_MS ?? 20);
  zammad.triggers = [{ name: 'omnigate', when: (e) => e.article?.sender === 'Agent' }];
  await zammad.start();
  const gw = await startGateway(
    {
      log: { level: 'warn' },
      router: { autoAcknowledge: { enabled: false } },
      connectors: [{ type: 'telegram', account: 'bench', token: '${TG}', apiRoot: api.apiRoot, pollTimeoutS: 1, pacing: { privateChatIntervalMs: 0, groupIntervalMs: 0, perSecond: 100000 } }],
      helpdesks: [{ type: 'zammad', id: 'zammad', url: zammad.url, token: '${ZT}', webhook: { secret: SECRET }, poll: { interval: 0 } }],
    },
    { env: { TG, ZT } },
  );
  zammad.webhook = { endpoint: `${gw.httpUrl}/helpdesks/zammad/zammad/webhook`, signatureToken: SECRET };
  let nextChat = 950_000;
  let nextMessage = 1;
  const push = (chat: number, text: string) =>
    api.push({ message: { message_id: nextMessage++, date: Math.floor(Date.now() / 1000), chat: { id: chat, type: 'private' }, from: { id: chat, first_name: 'Клиент' }, text } });
  try {
    // Warm-up.
    for (let i = 0; i < 10; i++) push(nextChat++, 'разогрев');
    await until('warm-up tickets', () => zammad.tickets.size >= 10);

    const chats: number[] = [];
    const base = zammad.tickets.size;
    const serviceBefore = zammad.serviceMs;
    const t0 = Date.now();
    for (let i = 0; i < tickets; i++) {
      const chat = nextChat++;
      chats.push(chat);
      push(chat, 'Здравствуйте, не проходит оплата');
    }
    const t1 = await until('tickets in Zammad', () => zammad.tickets.size >= base + tickets);
    const articlesBase = zammad.articles.size;
    const t2 = Date.now();
    for (const chat of chats) push(chat, 'Номер заказа 48213');
    const t3 = await until('follow-up articles', () => zammad.articles.size >= articlesBase + followUps);
    const helpdeskShare = (zammad.serviceMs - serviceBefore) / (t3 - t0);

    const zids = [...zammad.tickets.values()].slice(-tickets).map((t) => t.id);
    const latencies: number[] = [];
    const background = new Background();
    const chatOfTicket = (id: number) => zammad.users.find((u) => u.id === zammad.tickets.get(id)!.customer_id)!.login.split('-').pop()!;
    for (let i = 0; i < answers; i++) {
      const zid = zids[i % zids.length]!;
      const chat = chatOfTicket(zid);
      const text = `Ответ ${i}`;
      const at = Date.now();
      zammad.agentArticle(zid, { body: text, contentType: 'text/plain' });
      background.run(within(api.waitForCall((c) => c.method === 'sendMessage' && String(c.params.chat_id) === chat && c.params.text === text, 60_000), 65_000, () => `answer ${i} never reached the chat`).then((c) => latencies.push(c.at - at)));
      await new Promise((r) => setTimeout(r, 1000 / ANSWERS_PER_S));
    }
    await until('answers delivered', () => latencies.length >= answers);
    background.check();
    latencies.sort((a, b) => a - b);
    const ticketsPerS = tickets / ((t1 - t0) / 1000);
    const messagesPerS = followUps / ((t3 - t2) / 1000);
    return {
      name: 'zammad sync (telegram update → Zammad ticket; Zammad agent article → sendMessage)',
      events: tickets,
      per_s: ticketsPerS,
      p50_ms: percentile(latencies, 50),
      p99_ms: percentile(latencies, 99),
      note: `tickets/s over ${tickets} new chats; follow-up messages ${messagesPerS.toFixed(0)}/s over ${followUps}; answer → channel p50/p99 over ${answers} answers at ${ANSWERS_PER_S}/s; Zammad stand-in answering in ${zammad.latencyMs} ms per call took ${(helpdeskShare * 100).toFixed(0)}% of the sync phases' wall time (summed over concurrent calls)`,
    };
  } finally {
    await gw.stop();
    await zammad.stop();
    await api.stop();
  }
}
