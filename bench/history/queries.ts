/**
 * The read-model queries the history phase times through the HTTP API: the list with each
 * filter and cursor paging, full-text search from rare to common words, and contact lookups by
 * phone. Words and numbers are ones the loader (load.ts) writes, with their rough frequency.
 */
import { timePaging, timeRequests, type Api, type Timed } from './measure.js';

const ROUNDS = Number(process.env.BENCH_HISTORY_ROUNDS ?? 100);

export async function runQueries(api: Api, o: { tickets: number; firstNumber: number }, say: (s: string) => void): Promise<Record<string, { p50_ms: number; p99_ms: number; n: number; found: number }>> {
  const monthAgo = new Date(Date.now() - 30 * 86_400_000).toISOString();
  // WhatsApp contacts are k % 20 in 10..15, phone +7 (9160000000 + k): spread over the history.
  const phones: string[] = [];
  const contacts = Math.floor(o.tickets / 2);
  for (let k = 10; phones.length < 20 && k <= contacts; k += Math.max(20, Math.floor(contacts / 20 / 20) * 20)) phones.push(`+7${9160000000 + k + (phones.length % 6)}`);
  // Order numbers: 100000 + (i·7919 + j) mod 900000 — each number in a handful of messages.
  const orders = Array.from({ length: 20 }, (_, n) => String(100000 + ((n * 37 + 11) * 7919) % 900000));
  const q = (s: string) => `/v1/search?q=${encodeURIComponent(s)}`;
  const runs: Array<() => Promise<Timed>> = [
    () => timeRequests(api, 'list: newest', ['/v1/tickets?limit=50'], ROUNDS),
    () => timeRequests(api, 'list: status=open (0.1 %)', ['/v1/tickets?status=open&limit=50'], ROUNDS),
    () => timeRequests(api, 'list: status=closed', ['/v1/tickets?status=closed&limit=50'], ROUNDS),
    () => timeRequests(api, 'list: channel=whatsapp', ['/v1/tickets?channel=whatsapp&account=main&limit=50'], ROUNDS),
    () => timeRequests(api, 'list: createdSince 30 days', [`/v1/tickets?createdSince=${encodeURIComponent(monthAgo)}&limit=50`], ROUNDS),
    () => timeRequests(api, 'list: status=closed&channel=email', ['/v1/tickets?status=closed&channel=email&limit=50'], ROUNDS),
    () => timeRequests(api, 'list: contact=<phone>', phones.map((p) => `/v1/tickets?contact=${encodeURIComponent(p)}&limit=50`), ROUNDS),
    () => timePaging(api, 'list: cursor paging, 20 pages', '/v1/tickets?limit=50', 20, Math.max(1, Math.round(ROUNDS / 20))),
    () => timePaging(api, 'list: status=closed, cursor paging, 20 pages', '/v1/tickets?status=closed&limit=50', 20, Math.max(1, Math.round(ROUNDS / 20))),
    () => timeRequests(api, 'search: order number (rare)', orders.map(q), ROUNDS),
    () => timeRequests(api, 'search: surname (~3 % of tickets)', ['Лебедев', 'Зайцевым', 'Орлова', 'Никитин'].map(q), ROUNDS),
    () => timeRequests(api, 'search: "phrase" + city', ['"не проходит оплата" Казань', '"код подтверждения" Омск', '"возврат товара" Пермь'].map(q), ROUNDS),
    () => timeRequests(api, 'search: common word (~3 % of messages)', ['кофемашину', 'пылесос', 'наушники'].map(q), ROUNDS),
    () => timeRequests(api, 'contacts: phone', phones.map((p) => `/v1/contacts?phone=${encodeURIComponent(p)}`), ROUNDS),
  ];
  const out: Record<string, { p50_ms: number; p99_ms: number; n: number; found: number }> = {};
  for (const run of runs) {
    const t = await run();
    out[t.name] = { p50_ms: Number(t.p50.toFixed(1)), p99_ms: Number(t.p99.toFixed(1)), n: t.n, found: t.found };
    say(`  ${t.name.padEnd(46)} p50 ${t.p50.toFixed(1).padStart(7)} ms  p99 ${t.p99.toFixed(1).padStart(7)} ms  (${t.n} requests, ${t.found} in the last answer)`);
  }
  return out;
}
