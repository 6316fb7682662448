/**
 * The projection's apply rate alone: N inbound entries (300 conversations) through applyEntries in
 * transactions of 500, as projection.ts applies a batch, on the PostgreSQL database given (a
 * loaded history) or on a fresh throwaway one. Its rows are deleted afterwards.
 *   npx tsx bench/history/apply-rate.ts [postgres://127.0.0.1:5432/db]   (N=3000 by default)
 */
import { openDatabase } from '../../src/read-model/database.js';
import { migrate } from '../../src/read-model/migrations.js';
import { applyEntries } from '../../src/read-model/apply.js';
import { chatMessage } from '../../test/helpers/events.js';
import { postgresDatabase } from '../../test/helpers/sql.js';
import type { LogEntry } from '../../src/core/schema.js';
const fresh = process.argv[2] ? undefined : await postgresDatabase();
const url = process.argv[2] ?? fresh!.url;
const db = await openDatabase({ url, user: 'postgres', dataDir: '' });
await migrate(db);
const base = 60_000_000 + Math.floor(Math.random() * 1_000_000) * 10;
const N = Number(process.env.N ?? 3000);
const entries: Array<[string, LogEntry]> = [];
for (let i = 0; i < N; i++) {
  const conv = i % 300;
  const e = chatMessage({ account: 'load', chat: `ar-${base}-${conv}`, id: `ar-${base}-${i}`, text: 'Здравствуйте! Не проходит оплата по карте, заказ №48213' });
  entries.push([`AR-${base}-${conv}`, { kind: 'inbound', at: new Date().toISOString(), event: e, match: { rule: 'new-ticket', value: e.conversation.id } } as LogEntry]);
}
const t0 = performance.now();
for (let b = 0; b < N; b += 500) {
  await db.transaction((tx) => applyEntries(tx, entries.slice(b, b + 500).map(([ticketId, entry], i) => ({ seq: base + b + i, ticketId, entry }))));
}
const s = (performance.now() - t0) / 1000;
console.log(`${url}: ${N} entries in ${s.toFixed(1)} s = ${(N / s).toFixed(0)} entries/s`);
await db.query(`DELETE FROM tickets WHERE id LIKE 'AR-${base}-%'`);
await db.close();
await fresh?.drop();
