/**
 * Slack round trip: signed Events API post → ticket → reply command → chat.postMessage at the
 * stand-in. One DM channel per message.
 */
import { createHmac } from 'node:crypto';
import { startGateway } from '../../test/helpers/gateway.js';
import { FakeSlack } from '../../test/connectors/slack/slack-api.js';
import { Background, answerEveryMessage } from './background.js';
import { percentile, type ChannelBenchOptions, type ChannelBenchResult } from '../types.js';

const BOT = 'xoxb-1-bench';
const SIGNING = 'bench-signing-secret-0123456789';

export async function run(opts: ChannelBenchOptions): Promise<ChannelBenchResult> {
  const n = Math.max(50, Math.round(300 * opts.scale));
  const slack = new FakeSlack(BOT);
  await slack.start();
  const gw = await startGateway(
    { log: { level: 'warn' }, connectors: [{ type: 'slack', account: 'bench', mode: 'events', botToken: '${BOT}', signingSecret: '${SIGNING}', apiUrl: slack.apiUrl, perChannelIntervalMs: 0 }] },
    { env: { BOT, SIGNING } },
  );
  try {
    const background = new Background();
    const sub = answerEveryMessage(gw, background, 'ответ');
    const started = new Map<string, number>();
    const t0 = performance.now();
    let next = 0;
    await Promise.all(Array.from({ length: 16 }, async () => {
      while (next < n) {
        const i = next++;
        const channel = `DB${i}`;
        const raw = JSON.stringify({ type: 'event_callback', event_id: `EvB${i}`, event: { type: 'message', channel, channel_type: 'im', user: `UB${i}`, text: 'вопрос', ts: `1764000000.${String(i).padStart(6, '0')}` } });
        const t = Math.floor(Date.now() / 1000);
        started.set(channel, Date.now());
        const res = await fetch(`${gw.httpUrl}/connectors/slack/bench/events`, {
          method: 'POST',
          headers: { 'content-type': 'application/json', 'x-slack-request-timestamp': String(t), 'x-slack-signature': `v0=${createHmac('sha256', SIGNING).update(`v0:${t}:${raw}`).digest('hex')}` },
          body: raw,
        });
        await res.arrayBuffer();
      }
    }));
    while (slack.calls.filter((c) => c.method === 'chat.postMessage').length < n) await new Promise((r) => setTimeout(r, 20));
    const seconds = (performance.now() - t0) / 1000;
    sub.unsubscribe();
    background.check();
    const latencies = slack.calls.filter((c) => c.method === 'chat.postMessage').map((c) => c.at - started.get(String(c.params.channel))!).sort((a, b) => a - b);
    return { name: 'slack round trip (signed event → ticket → reply → chat.postMessage)', events: n, per_s: n / seconds, p50_ms: percentile(latencies, 50), p99_ms: percentile(latencies, 99), note: '16 concurrent senders, one DM each; every sender is new (one users.info each); latency under burst is mostly queueing' };
  } finally {
    await gw.stop();
    await slack.stop();
  }
}
