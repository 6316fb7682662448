/**
 * API reply throughput: POST /v1/tickets/:id/replies accepted (202) and dispatched to the
 * connector (its callback received the reply). Replies spread over many tickets, 32 in flight.
 */
import { createServer } from 'node:http';
import { startGateway } from '../../test/helpers/gateway.js';
import { percentile, type ChannelBenchOptions, type ChannelBenchResult } from '../types.js';

const TOKEN = 'bench-api-token-0123456789';
const SECRET = 'bench-site-secret-0123456789';

export async function run(opts: ChannelBenchOptions): Promise<ChannelBenchResult> {
  const tickets = 100;
  const replies = Math.max(200, Math.round(2000 * opts.scale));
  const dispatchedAt = new Map<string, number>();
  const callback = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      dispatchedAt.set(JSON.parse(Buffer.concat(chunks).toString()).text, performance.now());
      res.writeHead(200).end('{}');
    });
  });
  await new Promise<void>((r) => callback.listen(0, '127.0.0.1', r));
  const port = (callback.address() as { port: number }).port;
  const gw = await startGateway({
    log: { level: 'warn' },
    api: { tokens: [{ name: 'bench', token: TOKEN }] },
    connectors: [{ type: 'webhook', account: 'site', secret: SECRET, callbackUrl: `http://127.0.0.1:${port}/cb` }],
  });
  try {
    const ids: string[] = [];
    for (let i = 0; i < tickets; i++) {
      await fetch(`${gw.httpUrl}/connectors/webhook/site/messages`, { method: 'POST', headers: { authorization: `Bearer ${SECRET}` }, body: JSON.stringify({ messageId: `b${i}`, sender: { id: `c${i}` }, text: 'вопрос' }) });
      ids.push((await gw.waitForEvent((e) => e.type === 'ticket.message' && (e.entry as any).event.id === `webhook:site:b${i}`)).ticketId);
    }
    const sentAt = new Map<string, number>();
    const accept: number[] = [];
    const t0 = performance.now();
    let next = 0;
    await Promise.all(Array.from({ length: 32 }, async () => {
      while (next < replies) {
        const i = next++;
        const text = `ответ ${i}`;
        const start = performance.now();
        sentAt.set(text, start);
        const res = await fetch(`${gw.httpUrl}/v1/tickets/${ids[i % tickets]}/replies`, {
          method: 'POST', headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json', 'idempotency-key': `k${i}` }, body: JSON.stringify({ text }),
        });
        await res.arrayBuffer();
        if (res.status !== 202) throw new Error(`reply answered ${res.status}`);
        accept.push(performance.now() - start);
      }
    }));
    const acceptedPerS = replies / ((performance.now() - t0) / 1000);
    while (dispatchedAt.size < replies) await new Promise((r) => setTimeout(r, 20));
    const end = Math.max(...dispatchedAt.values());
    const latencies = [...sentAt].map(([text, t]) => dispatchedAt.get(text)! - t).sort((a, b) => a - b);
    accept.sort((a, b) => a - b);
    return {
      name: 'API replies (POST → 202 → connector callback)',
      events: replies,
      per_s: replies / ((end - t0) / 1000),
      p50_ms: percentile(latencies, 50),
      p99_ms: percentile(latencies, 99),
      note: `accepted ${acceptedPerS.toFixed(0)}/s, accept p99 ${percentile(accept, 99).toFixed(1)} ms; 100 tickets, 32 clients`,
    };
  } finally {
    await gw.stop();
    callback.close();
  }
}
