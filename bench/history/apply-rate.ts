/**
 * The projection's apply rate alone: N ticket-log entries of 300 conversations interleaved through
 * applyEntries in transactions of 500, as projection.ts applies a batch, on the PostgreSQL database
 * given (a loaded history) or on a fresh throwaway one. MIX=lifecycle (default): each ticket's
 * life as the history bench writes it (inbound, reply, sent, delivered, …, resolved, closed);
 * MIX=inbound: customer messages only. Its rows are deleted afterwards.
 *   npx tsx bench/history/apply-rate.ts [postgres://127.0.0.1:5432/db | pglite]   (N=3000 by default)
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openDatabase } from '../../src/read-model/database.js';
import { migrate } from '../../src/read-model/migrations.js';
import { applyEntries } from '../../src/read-model/apply.js';
import { chatMessage } from '../../test/helpers/events.js';
import { postgresDatabase } from '../../test/helpers/sql.js';
import type { LogEntry } from '../../src/core/schema.js';
const target = process.argv[2];
const fresh = target ? undefined : await postgresDatabase();
const pgliteDir = target === 'pglite' ? await mkdtemp(join(tmpdir(), 'omnigate-apply-rate-')) : undefined;
const url = pgliteDir ? '' : (target ?? fresh!.url);
const rssMb = () => Math.round(process.memoryUsage().rss / 1e6);
const db = await openDatabase({ url, user: 'postgres', dataDir: pgliteDir ?? '' });
await migrate(db);
const rssOpen = rssMb();
const base = 60_000_000 + Math.floor(Math.random() * 1_000_000) * 10;
const N = Number(process.env.N ?? 3000);
const MIX = process.env.MIX === 'inbound' ? 'inbound' : 'lifecycle';
const entries: Array<[string, LogEntry]> = [];
const now = () => new Date().toISOString();
const customer = (conv: number, i: number, text: string): LogEntry => {
  const e = chatMessage({ account: 'load', chat: `ar-${base}-${conv}`, id: `ar-${base}-${i}`, text });
  return { kind: 'inbound', at: now(), event: e, match: { rule: 'new-ticket', value: e.conversation.id } };
};
const reply = (ticketId: string, conv: number, i: number): LogEntry => ({
  kind: 'outbound', at: now(),
  message: { v: 1, type: 'message.outbound', id: `out-${base}-${i}`, ticketId, channel: 'webhook', account: 'load', conversation: { id: `ar-${base}-${conv}`, kind: 'private' },
    text: 'Проверили: платёж прошёл, заказ передан в доставку', attachments: [], author: { id: 'agent-1', name: 'Анна' }, createdAt: now(), automated: false, purpose: 'agent_reply' },
});
const delivery = (ticketId: string, outboundI: number, status: 'sent' | 'delivered'): LogEntry => ({
  kind: 'delivery', at: now(), status: { v: 1, type: 'delivery.status', outboundId: `out-${base}-${outboundI}`, ticketId, channel: 'webhook', account: 'load', status, attempts: 1, at: now() },
});
const status = (to: 'resolved' | 'closed', from: 'pending' | 'resolved'): LogEntry => ({ kind: 'status', at: now(), from, to, author: { id: 'agent-1' } });
// As bench/history/load.ts writes a ticket's life: inbound, reply, sent, delivered (twice), "thank you", resolved, closed.
const LIFECYCLE = 11;
for (let i = 0; entries.length < N; i++) {
  const conv = i % 300;
  const step = Math.floor(i / 300) % LIFECYCLE;
  const ticketId = `AR-${base}-${conv}`;
  if (MIX === 'inbound') {
    entries.push([ticketId, customer(conv, i, 'Здравствуйте! Не проходит оплата по карте, заказ №48213')]);
    continue;
  }
  const replyI = i - 300 * ((step - 1) % 4); // the reply of steps 2–3 and 6–7 is 1–2 rounds back
  const entry = [
    () => customer(conv, i, 'Здравствуйте! Не проходит оплата по карте, заказ №48213'),
    () => reply(ticketId, conv, i),
    () => delivery(ticketId, replyI, 'sent'),
    () => delivery(ticketId, replyI, 'delivered'),
    () => customer(conv, i, 'А когда привезут?'),
    () => reply(ticketId, conv, i),
    () => delivery(ticketId, replyI, 'sent'),
    () => delivery(ticketId, replyI, 'delivered'),
    () => customer(conv, i, 'Спасибо!'),
    () => status('resolved', 'pending'),
    () => status('closed', 'resolved'),
  ][step]!();
  entries.push([ticketId, entry]);
}
const t0 = performance.now();
for (let b = 0; b < N; b += 500) {
  await db.transaction((tx) => applyEntries(tx, entries.slice(b, b + 500).map(([ticketId, entry], i) => ({ seq: base + b + i, ticketId, entry }))));
}
const s = (performance.now() - t0) / 1000;
console.log(`${pgliteDir ? 'pglite' : url} (${MIX}): ${N} entries in ${s.toFixed(1)} s = ${(N / s).toFixed(0)} entries/s; RSS ${rssOpen} MB open, ${rssMb()} MB after`);
await db.query(`DELETE FROM tickets WHERE id LIKE 'AR-${base}-%'`);
await db.close();
await fresh?.drop();
if (pgliteDir) await rm(pgliteDir, { recursive: true, force: true });
