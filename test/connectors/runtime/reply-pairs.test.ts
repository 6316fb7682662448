/**
 * Two replies to one ticket accepted a few ms apart (two agents, a helpdesk adapter posting two
 * comments) reach the customer in the order they were accepted, at two replicas, while other
 * tickets' replies go at the same time. Before the ticket's reply slot (router/reply-slot.ts) both
 * read the same predecessor, both were published naming it, and the runners sent them in either
 * order. The real path: omni.cmd.reply on the router, OMNI_OUT, two outbound runners sharing the
 * durable, a stand-in platform that refuses some first attempts (retries hold later replies back).
 */
import { describe, expect, it } from 'vitest';
import { jetstream } from '@nats-io/jetstream';
import type { TestGateway } from '../../helpers/gateway.js';
import { gatewayPerFile } from '../../helpers/file-gateway.js';
import { until } from '../../helpers/until.js';
import { chatMessage, publishEvent } from '../../helpers/events.js';
import { OutboundRunner } from '../../../src/connectors/outbound-runner.js';
import type { Connector } from '../../../src/connectors/contract.js';
import { TransientDeliveryError } from '../../../src/core/errors.js';
import { createLogger } from '../../../src/core/logger.js';
import type { OutboundMessage } from '../../../src/core/schema.js';
import { Streams, Subjects } from '../../../src/core/subjects.js';
import { previousReplyOf } from '../../../src/core/reply-order.js';

let gw: TestGateway;
gatewayPerFile({ connectors: [] }, (g) => (gw = g));

const log = createLogger({ level: (process.env.TEST_LOG as 'debug') ?? 'silent' });
const ACCOUNT = 'pairs';
const TICKETS = 10;
const PAIRS_PER_TICKET = 5;

/** Sends in the order it is called, per conversation; about a third of first attempts answer 503, and each call takes 0–15 ms. */
function platform(sent: Map<string, string[]>): Connector {
  const refused = new Set<string>();
  return {
    start: async () => {},
    stop: async () => {},
    health: () => ({ state: 'connected', since: new Date().toISOString() }),
    send: async (m) => {
      await new Promise((r) => setTimeout(r, Math.random() * 15));
      if (!refused.has(m.id) && Math.random() < 0.35) {
        refused.add(m.id);
        throw new TransientDeliveryError('platform busy (503)');
      }
      const list = sent.get(m.ticketId) ?? [];
      list.push(m.id);
      sent.set(m.ticketId, list);
      return { platformMessageId: `p-${m.id}` };
    },
  };
}

describe('two replies to one ticket accepted at once', () => {
  it(`go out in the order they were accepted: ${TICKETS * PAIRS_PER_TICKET} pairs, two replicas`, async () => {
    const bus = gw.gateway.bus;
    const sent = new Map<string, string[]>();
    const stand = platform(sent);
    const options = { maxAttempts: 6, backoffBaseMs: 50, backoffMaxMs: 200, ackWaitMs: 5_000, concurrency: 4 };
    const replicas = ['r1', 'r2'].map((replica) => new OutboundRunner(bus, 'webhook', ACCOUNT, stand, log, { ...options, replica }));
    await Promise.all(replicas.map((r) => r.start()));
    try {
      const tickets: string[] = [];
      for (let i = 0; i < TICKETS; i++) {
        await publishEvent(gw.nc, chatMessage({ account: ACCOUNT, chat: `pair-${i}`, from: `client-pair-${i}` }));
        tickets.push((await gw.waitForEvent((e) => e.type === 'ticket.created' && e.conversation?.id === `pair-${i}`)).ticketId);
      }
      // Every ticket at once; in each, pair after pair, the two replies of a pair a few ms apart.
      const accepted = new Map<string, string[]>();
      await Promise.all(tickets.map(async (ticketId) => {
        for (let p = 0; p < PAIRS_PER_TICKET; p++) {
          const results = await Promise.all(['первый', 'второй'].map(async (which, k) => {
            await new Promise((r) => setTimeout(r, k * Math.random() * 3));
            return gw.request('omni.cmd.reply', { ticketId, text: `Ответ ${p}: ${which}` });
          }));
          for (const r of results) expect(r.ok).toBe(true);
        }
        accepted.set(ticketId, []);
      }));
      await until(() => tickets.every((t) => (sent.get(t)?.length ?? 0) >= 2 * PAIRS_PER_TICKET), 'every reply to be sent', 60_000);

      // The order they were accepted in: the order the router logged and published them.
      const js = jetstream(gw.nc);
      const c = await js.consumers.get(Streams.outbound, { filter_subjects: Subjects.outbound('webhook', ACCOUNT) });
      const links: Array<{ ticketId: string; id: string; seq: number; after?: { id: string; seq: number } }> = [];
      try {
        for (;;) {
          const m = await c.next({ expires: 1000 });
          if (!m) break;
          const o = m.json<OutboundMessage>();
          links.push({ ticketId: o.ticketId, id: o.id, seq: m.seq, after: previousReplyOf(m.headers) });
        }
      } finally {
        await c.delete().catch(() => {});
      }
      for (const l of links) accepted.get(l.ticketId)!.push(l.id);
      const wrongOrder = tickets.filter((t) => JSON.stringify(sent.get(t)) !== JSON.stringify(accepted.get(t)));
      expect(wrongOrder).toEqual([]);
      // Each reply names the one published before it on its ticket: no two name the same.
      for (const t of tickets) {
        const chain = links.filter((l) => l.ticketId === t);
        expect(chain).toHaveLength(2 * PAIRS_PER_TICKET);
        for (let i = 1; i < chain.length; i++) expect(chain[i]!.after).toEqual({ id: chain[i - 1]!.id, seq: chain[i - 1]!.seq });
      }
    } finally {
      await Promise.all(replicas.map((r) => r.stop()));
    }
  });
});
