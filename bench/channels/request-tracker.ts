/**
 * Request Tracker helpdesk sync against a real RT 5 (Debian's request-tracker5, SQLite, 2 Starlet
 * workers), the whole gateway, the Telegram stand-in:
 *  - tickets/s: a burst of N new Telegram chats until every RT ticket is linked;
 *  - messages/s: M follow-up customer messages until each is written to RT;
 *  - answer → channel latency: an agent's correspondence (REST2 as `agent`) until sendMessage at
 *    the stand-in, p50/p99; RT's own time for the same call (the POST until RT answered) is
 *    measured apart and reported in the note, as is RT's bare create/correspond time.
 * Needs RT installed (`.ci/run`); the load of a shared machine dominates RT's numbers.
 */
import { startGateway } from '../../test/helpers/gateway.js';
import { FakeBotApi } from '../../test/connectors/telegram/bot-api.js';
import { rtCall, rtInstalled, startRt } from '../../test/helpers/request-tracker.js';
import { RtClient } from '../../src/helpdesks/request-tracker/client.js';
import { percentile, within, type ChannelBenchOptions, type ChannelBenchResult } from '../types.js';

const TOKEN = '123456:BENCH-rt-token-abcdefghijklmnop';

export async function run(opts: ChannelBenchOptions): Promise<ChannelBenchResult> {
  if (!rtInstalled()) throw new Error('Request Tracker 5 is not installed (.ci/run installs it)');
  const tickets = Math.max(5, Math.round(20 * opts.scale));
  const followUps = tickets * 2;
  const answers = Math.max(5, Math.round(20 * opts.scale));
  const rt = await startRt();
  const api = new FakeBotApi(TOKEN);
  await api.start();
  const client = new RtClient({ url: rt.url, token: rt.token });
  const gw = await startGateway(
    {
      log: { level: 'info' },
      connectors: [{ type: 'telegram', account: 'bench', token: '${TG}', apiRoot: api.apiRoot, pollTimeoutS: 1, pacing: { privateChatIntervalMs: 0, groupIntervalMs: 0, perSecond: 100000 } }],
      helpdesks: [{ type: 'request-tracker', id: 'rt', url: rt.url, token: '${RT_TOKEN}', user: 'root', pollInterval: '200ms', backoffBase: '200ms' }],
    },
    { env: { TG: TOKEN, RT_TOKEN: rt.token } },
  );
  const count = (needle: string) => gw.logs.filter((l) => l.includes(needle)).length;
  const until = async (what: string, cond: () => boolean, ms: number) =>
    within(
      (async () => {
        while (!cond()) await new Promise((r) => setTimeout(r, 50));
        return Date.now();
      })(),
      ms,
      () => `request-tracker bench: ${what} not reached within ${ms} ms`,
    );
  try {
    // RT alone: sequential creates and correspondences, no gateway involved.
    const bare = { create: [] as number[], correspond: [] as number[] };
    await client.ensureUser({ name: 'bench.requestor' });
    for (let i = 0; i < 5; i++) {
      let t = Date.now();
      const id = await client.createTicket({ queue: 'General', subject: `bare ${i}`, requestors: ['bench.requestor'], content: 'Здравствуйте' });
      bare.create.push(Date.now() - t);
      t = Date.now();
      await client.correspond(id, { content: 'Ещё сообщение' });
      bare.correspond.push(Date.now() - t);
    }

    const chats = Array.from({ length: tickets }, (_, i) => 910_000 + i);
    const push = (chat: number, text: string) =>
      api.push({ message: { message_id: api.nextUpdateId, date: Math.floor(Date.now() / 1000), chat: { id: chat, type: 'private' }, from: { id: chat, first_name: 'Клиент' }, text } });
    const linkedBefore = count('helpdesk ticket linked');
    const t0 = Date.now();
    for (const chat of chats) push(chat, 'Здравствуйте, не работает оплата');
    const t1 = await until('all tickets linked', () => count('helpdesk ticket linked') - linkedBefore >= tickets, 30 * 60_000);

    const syncedBefore = count('"event":"ticket.message","outcome":"applied"');
    const t2 = Date.now();
    for (let i = 0; i < followUps; i++) push(chats[i % chats.length]!, `Дополнение ${i}`);
    const t3 = await until('all follow-ups written', () => count('"event":"ticket.message","outcome":"applied"') - syncedBefore >= followUps, 30 * 60_000);

    // Answers, one at a time: RT's POST, then our part until the stand-in got it.
    const ours: number[] = [];
    const rtOwn: number[] = [];
    for (let i = 0; i < answers; i++) {
      const chat = chats[i % chats.length]!;
      const rtId = (await client.findTicketsByCustomField('External ID', (await ticketOfChat(gw, chat))!))[0]!;
      const text = `Ответ оператора ${i}`;
      const t = Date.now();
      const r = await rtCall(rt, 'agent', 'POST', `/ticket/${rtId}/correspond`, { Content: text, ContentType: 'text/plain' });
      if (r.status !== 201) throw new Error(`agent correspond: HTTP ${r.status}`);
      const answered = Date.now();
      rtOwn.push(answered - t);
      const call = await api.waitForCall((c) => c.method === 'sendMessage' && String(c.params.text).includes(text), 120_000);
      ours.push(call.at - answered);
    }
    ours.sort((a, b) => a - b);
    rtOwn.sort((a, b) => a - b);
    bare.create.sort((a, b) => a - b);
    bare.correspond.sort((a, b) => a - b);
    return {
      name: 'request-tracker sync (Telegram → RT tickets; RT answer → sendMessage)',
      events: tickets,
      per_s: tickets / ((t1 - t0) / 1000),
      p50_ms: percentile(ours, 50),
      p99_ms: percentile(ours, 99),
      note:
        `${tickets} tickets in ${((t1 - t0) / 1000).toFixed(1)} s; ${followUps} follow-ups at ${(followUps / ((t3 - t2) / 1000)).toFixed(2)} msgs/s; ` +
        `answer latency after RT answered the agent's POST (poll 200 ms) over ${answers}; ` +
        `RT's own time for that POST p50 ${percentile(rtOwn, 50)} ms p99 ${percentile(rtOwn, 99)} ms; ` +
        `bare RT create p50 ${percentile(bare.create, 50)} ms, correspond p50 ${percentile(bare.correspond, 50)} ms`,
    };
  } finally {
    await gw.stop();
    await api.stop();
    await rt.stop();
  }
}

async function ticketOfChat(gw: Awaited<ReturnType<typeof startGateway>>, chat: number): Promise<string | undefined> {
  const e = await gw.waitForEvent((x) => x.type === 'ticket.created' && x.conversation?.id === String(chat), 60_000);
  return e.ticketId;
}
