/**
 * What the WhatsApp Web test files share: the rig they run on (startWaRig), the connector config,
 * proto-shaped message builders, waiting for connector state events, and a way to make the account state store refuse writes
 * (a real JetStream limit on the omni_state stream, not a stub) for the failure paths.
 */
import { jetstreamManager } from '@nats-io/jetstream';
import type { TestGateway } from '../../helpers/gateway.js';
import { startNats, type TestNats } from '../../helpers/nats-server.js';
import { setSocketFactory } from '../../../src/connectors/whatsapp/socket.js';
import type { ConnectorStateEvent, InboundMessage, LogEntry, TicketEvent } from '../../../src/core/schema.js';
import { MediaServer, SocketPool, type FakeSocket } from './fake-socket.js';

export const TOKEN = '0123456789abcdef0123';

/**
 * A throwaway nats-server, the local media server, and the fake socket pool installed as the
 * connector's socket factory: what a gateway with a WhatsApp Web account runs against here.
 */
export interface WaRig {
  nats: TestNats;
  media: MediaServer;
  pool: SocketPool;
  /** Uninstalls the socket factory, then stops the media server and nats-server (after the gateways). */
  stop(): Promise<void>;
}

export async function startWaRig(): Promise<WaRig> {
  const nats = await startNats();
  const media = new MediaServer();
  try {
    await media.start();
  } catch (err) {
    await nats.stop();
    throw err;
  }
  const pool = new SocketPool(media);
  setSocketFactory(pool.factory);
  return {
    nats,
    media,
    pool,
    async stop() {
      setSocketFactory(undefined);
      await media.stop();
      await nats.stop();
    },
  };
}
export const ME = '79990000001:7@s.whatsapp.net';

export function waConfig(extra: Record<string, unknown> = {}) {
  return {
    api: { tokens: [{ name: 'ops', token: TOKEN }] },
    outbound: { backoffBase: '100ms' },
    connectors: [{
      type: 'whatsapp', account: 'wa1', groups: 'all', maxFileBytes: 200_000,
      pairing: { phoneNumber: '79990000001', printQr: false },
      reconnect: { minDelayMs: 20, maxDelayMs: 200 },
      pacing: { privateChatIntervalMs: 0, groupIntervalMs: 0, perSecond: 0 },
      ...extra,
    }],
  };
}

export const inboundOf = (e: TicketEvent) => (e.entry as Extract<LogEntry, { kind: 'inbound' }> | undefined)?.event as InboundMessage | undefined;
export const deliveryOf = (e: TicketEvent) => (e.entry as Extract<LogEntry, { kind: 'delivery' }> | undefined)?.status;

let seq = 0;
export function msg(chat: string, content: Record<string, unknown>, o: { id?: string; participant?: string; pushName?: string; fromMe?: boolean } = {}) {
  return {
    key: { remoteJid: chat, fromMe: o.fromMe ?? false, id: o.id ?? `3A${++seq}${Date.now()}`, ...(o.participant ? { participant: o.participant } : {}) },
    message: content,
    pushName: o.pushName ?? 'Клиент',
    messageTimestamp: Math.floor(Date.now() / 1000),
  };
}

/** The next connector state event after `since` matching `pred` (read from the events stream). */
export function waitState(g: TestGateway, since: string, pred: (e: ConnectorStateEvent) => boolean, timeoutMs = 15_000): Promise<ConnectorStateEvent> {
  return g.waitForStreamMessage<ConnectorStateEvent>('OMNI_EVENTS', 'omni.events.connector.whatsapp.wa1', (e) => e.at >= since && pred(e), timeoutMs);
}

export async function openSocket(g: TestGateway, pool: SocketPool, n: number): Promise<FakeSocket> {
  const s = await pool.nth(n);
  const since = new Date().toISOString();
  s.ev.emit('connection.update', { connection: 'open' });
  await waitState(g, since, (e) => e.state === 'connected');
  return s;
}

export async function authKeys(g: TestGateway): Promise<string[]> {
  const out: string[] = [];
  for await (const k of await g.gateway.bus.kv.state.keys('whatsapp.wa1.>')) if (k.startsWith('whatsapp.wa1.wa-auth-')) out.push(k);
  return out;
}

/** Values larger than `maxBytes` are refused by the account state store until called with -1. */
export async function limitStateValues(g: TestGateway, maxBytes: number): Promise<void> {
  const jsm = await jetstreamManager(g.nc);
  const info = await jsm.streams.info('KV_omni_state');
  await jsm.streams.update('KV_omni_state', { ...info.config, max_msg_size: maxBytes });
}

export const delay = (ms: number) => new Promise((r) => setTimeout(r, ms));
