/**
 * Shared set-up for the email tests (and the benchmark): a nats-server, a Dovecot with the
 * support mailbox, the SMTP stand-in, and gateway configs pointing at them.
 */
import { jetstream, jetstreamManager } from '@nats-io/jetstream';
import { Kvm } from '@nats-io/kv';
import type { NatsConnection } from '@nats-io/transport-node';
import type { ImapFlow } from 'imapflow';
import type { InboundMessage, TicketEvent } from '../../../src/core/schema.js';
import { afterAll, beforeAll } from 'vitest';
import { Streams, hashKey } from '../../../src/core/subjects.js';
import type { Checkpoint } from '../../../src/connectors/email/checkpoint.js';
import { startDovecot, type TestDovecot } from '../../helpers/dovecot.js';
import { startGateway, type TestGateway } from '../../helpers/gateway.js';
import { startNats, type TestNats } from '../../helpers/nats-server.js';
import { startSmtp, type TestSmtp } from '../../helpers/smtp.js';

export const SUPPORT = 'support@example.ru';
export const PASSWORD = 'imap-secret-pw';

export interface EmailWorld {
  nats: TestNats;
  dovecot: TestDovecot;
  smtp: TestSmtp;
  /** The test's own IMAP session on the support mailbox. */
  imap: ImapFlow;
  stop(): Promise<void>;
}

export async function startWorld(users: string[] = [SUPPORT]): Promise<EmailWorld> {
  // One that fails to start (no Dovecot here) must not leave the others running.
  const [n, d, m] = await Promise.allSettled([startNats(), startDovecot(), startSmtp()]);
  if (n.status === 'rejected' || d.status === 'rejected' || m.status === 'rejected') {
    for (const r of [n, d, m]) if (r.status === 'fulfilled') await r.value.stop();
    throw [n, d, m].find((r) => r.status === 'rejected')!.reason;
  }
  const [nats, dovecot, smtp] = [n.value, d.value, m.value];
  for (const u of users) await dovecot.addUser(u, PASSWORD);
  const imap = await dovecot.client(users[0]!, PASSWORD);
  return {
    nats,
    dovecot,
    smtp,
    imap,
    async stop() {
      await dovecot.stop();
      await smtp.stop();
      await nats.stop();
    },
  };
}

export function mailbox(world: EmailWorld, address = SUPPORT, extra: Record<string, unknown> = {}) {
  return {
    address,
    name: 'Служба поддержки',
    imap: { host: world.dovecot.host, port: world.dovecot.port, secure: false, starttls: false, user: address, pass: '${IMAP_PASS}' },
    smtp: { host: world.smtp.host, port: world.smtp.port, secure: false, starttls: false },
    ...extra,
  };
}

export function emailGateway(world: EmailWorld, connector: Record<string, unknown>, top: Record<string, unknown> = {}): Promise<TestGateway> {
  return startGateway(
    {
      outbound: { backoffBase: '100ms', backoffMax: '1s' },
      connectors: [{ type: 'email', account: 'support', firstRun: 'all', mailboxes: [mailbox(world)], ...connector }],
      ...top,
    },
    { nats: world.nats, env: { IMAP_PASS: PASSWORD } },
  );
}

/** Resolves once every email connector reports `connected` (polls the in-process health; cheap). */
export async function connected(gw: TestGateway, timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const states = gw.gateway.connectors.health().filter((h) => h.channel === 'email');
    if (states.length > 0 && states.every((s) => s.state === 'connected')) return;
    if (Date.now() > deadline) throw new Error(`email connector not connected: ${JSON.stringify(states)}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

/** Every ticket event ever published on this server, collected from the stream (survives gateway restarts). */
export async function collectTicketEvents(nc: NatsConnection): Promise<{ events: TicketEvent[]; stop(): void }> {
  const js = jetstream(nc);
  const consumer = await js.consumers.get(Streams.events, { filter_subjects: 'omni.events.ticket.>' });
  const iter = await consumer.consume();
  const events: TicketEvent[] = [];
  void (async () => {
    for await (const m of iter) events.push(m.json<TicketEvent>());
  })();
  return { events, stop: () => iter.stop() };
}

/** Waits until the router consumed everything on the inbound stream (nothing pending or unacked). */
export async function routerDrained(nc: NatsConnection, timeoutMs = 30_000): Promise<void> {
  const jsm = await jetstreamManager(nc);
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const info = await jsm.consumers.info(Streams.inbound, 'router');
    if (info.num_pending === 0 && info.num_ack_pending === 0) return;
    if (Date.now() > deadline) throw new Error(`router not drained: ${info.num_pending} pending, ${info.num_ack_pending} unacked`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

export const inboundOf = (e: TicketEvent) => (e.entry?.kind === 'inbound' ? e.entry.event : undefined);

/** Resolves once `pred` holds (polled every 20 ms). */
export async function until(pred: () => boolean | Promise<boolean>, what: string, timeoutMs = 45_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await pred())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** Opened tickets per customer Message-ID, from the router's own events. */
export function openedBy(events: TicketEvent[]): Map<string, string[]> {
  const out = new Map<string, string[]>();
  for (const e of events) {
    const m = inboundOf(e);
    if (e.type !== 'ticket.message' || !m?.email || e.entry?.kind !== 'inbound' || e.entry.match.rule !== 'new-ticket') continue;
    out.set(m.email.messageId, [...(out.get(m.email.messageId) ?? []), e.ticketId]);
  }
  return out;
}

/** The support mailbox's intake checkpoint for a folder, as the connector keeps it in KV. */
export async function checkpointOf(nc: NatsConnection, folder: string): Promise<{ key: string; cp: Checkpoint | null }> {
  const kv = await new Kvm(nc).open('omni_state');
  const key = `email.support.${hashKey(`uid:${SUPPORT}:${folder}`)}`;
  const e = await kv.get(key);
  return { key, cp: e && e.operation === 'PUT' ? e.json<Checkpoint>() : null };
}

/**
 * A describe block's mailbox and gateway (support's mailbox, polled every minute: mail is found by
 * IDLE), started before its tests and stopped after; `inbound` waits for a mail's inbound event.
 * Fields are set once the block's beforeAll has run.
 */
export function mailboxGateway(): { world: EmailWorld; gw: TestGateway; inbound: (messageId: string) => Promise<InboundMessage> } {
  const rig = {
    world: undefined as unknown as EmailWorld,
    gw: undefined as unknown as TestGateway,
    inbound: async (messageId: string) =>
      inboundOf(await rig.gw.waitForEvent((e) => e.type === 'ticket.message' && inboundOf(e)?.email?.messageId === messageId, 20_000))! as InboundMessage,
  };
  beforeAll(async () => {
    rig.world = await startWorld();
    rig.gw = await emailGateway(rig.world, { pollIntervalMs: 60_000 });
    await connected(rig.gw);
  });
  afterAll(async () => {
    await rig.gw?.stop();
    await rig.world?.stop();
  });
  return rig;
}
