/**
 * Email intake: mail APPENDed to a real Dovecot → IMAP IDLE → connector (fetch, mailparser,
 * publish, \Seen) → router → ticket. Latency per mail from its APPEND being issued to
 * its ticket.message event; throughput over the whole batch.
 */
import type { TicketEvent } from '../../src/core/schema.js';
import { connected, emailGateway, inboundOf, startWorld } from '../../test/connectors/email/harness.js';
import { plainMail } from '../../test/connectors/email/mails.js';
import { Background } from './background.js';
import { percentile, within, type ChannelBenchOptions, type ChannelBenchResult } from '../types.js';

export async function run(opts: ChannelBenchOptions): Promise<ChannelBenchResult> {
  const n = Math.max(50, Math.round(1000 * opts.scale));
  const world = await startWorld();
  const gw = await emailGateway(world, { pollIntervalMs: 60_000 }, { log: { level: 'warn' } });
  try {
    await connected(gw);
    const appendedAt = new Map<string, number>();
    const latencies: number[] = [];
    let finish!: () => void;
    const finished = new Promise<void>((r) => (finish = r));
    const sub = gw.nc.subscribe('omni.events.ticket.message');
    const background = new Background();
    background.run((async () => {
      for await (const m of sub) {
        const e = m.json<TicketEvent>();
        const id = inboundOf(e)?.email?.messageId;
        const started = id ? appendedAt.get(id) : undefined;
        if (started === undefined) continue;
        appendedAt.delete(id!);
        latencies.push(performance.now() - started);
        if (latencies.length >= n) finish();
      }
    })());
    const t0 = performance.now();
    // A second IMAP session keeps appending while the connector reads: mail arrives continuously.
    for (let i = 0; i < n; i++) {
      const messageId = `<bench.${i}.${Date.now()}@client.example.ru>`;
      const raw = plainMail({ from: `Клиент ${i} <client${i}@client.example.ru>`, messageId, subject: `Не проходит оплата №${i}`, text: 'Здравствуйте! Не проходит оплата картой.\n\n-- \nКлиент' });
      // Set before the APPEND: with IDLE the ticket event can arrive before APPEND's reply does.
      appendedAt.set(messageId, performance.now());
      await world.imap.append('INBOX', raw);
    }
    await within(finished, 120_000, () => `only ${latencies.length}/${n} mails became tickets within 120 s`);
    background.check();
    const seconds = (performance.now() - t0) / 1000;
    sub.unsubscribe();
    latencies.sort((a, b) => a - b);
    return {
      name: 'email intake (APPEND to Dovecot → IDLE → ticket)',
      events: n,
      per_s: n / seconds,
      p50_ms: percentile(latencies, 50),
      p99_ms: percentile(latencies, 99),
      note: 'one new sender per mail, plain UTF-8 text; latency from APPEND issued to ticket.message; throughput bounded by the single APPEND session',
    };
  } finally {
    await gw.stop();
    await world.stop();
  }
}
