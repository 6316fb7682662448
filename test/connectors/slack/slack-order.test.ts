/**
 * Slack, the order of a burst: a thread's first post and its replies pushed back to back over
 * Socket Mode reach the ticket in the order Slack sent them, and an edit or a deletion pushed right
 * after its original is attached to it instead of being parked as "the original never reached the
 * router". Through the real connector, the stand-in's Socket Mode server, a real nats-server and
 * the router. Order is checked in the ticket log; nothing here measures time.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Subscription } from '@nats-io/transport-node';
import { startGateway, type TestGateway } from '../../helpers/gateway.js';
import { FakeSlack } from './slack-api.js';
import type { DeadLetter, LogEntry, TicketEvent } from '../../../src/core/schema.js';

const BOT = 'xoxb-4-order-bot-token';
const APP = 'xapp-4-order-app-token';
let slack: FakeSlack;
let gw: TestGateway;
let parkedSub: Subscription;
const parked: string[] = [];
let seq = 100;

type Inbound = Extract<LogEntry, { kind: 'inbound' }>['event'];
const inboundOf = (e: TicketEvent) => (e.entry as Extract<LogEntry, { kind: 'inbound' }> | undefined)?.event as Inbound | undefined;
const ts = () => `1765200${String(seq++).padStart(3, '0')}.000300`;
const envelope = (event: Record<string, unknown>) => ({ type: 'event_callback', team_id: 'T1', api_app_id: 'A1', event_id: `EvO${seq++}`, event_time: 1765200000, event });
const post = (user: string, text: string, at: string, threadTs?: string) =>
  envelope({ type: 'message', channel: 'CORDER', channel_type: 'channel', user, text, ts: at, ...(threadTs ? { thread_ts: threadTs } : {}) });

/** The ticket log's entries of a ticket, as `inbound:<text>`, `edited:<text>` and `deleted:<target>`. */
async function logOf(ticketId: string): Promise<string[]> {
  return (await gw.gateway.router!.store.readLog(ticketId)).flatMap((l) => {
    const entry = l.entry;
    if (entry.kind === 'inbound') return [`inbound:${entry.event.text}`];
    if (entry.kind === 'edited') return [`edited:${entry.event.text}`];
    if (entry.kind === 'deleted') return [`deleted:${entry.event.targetPlatformMessageId}`];
    return [];
  });
}

/** The ticket event `pred` names, or a failure as soon as the router parks a change of `target` instead. */
function routedOrParked(pred: (e: TicketEvent) => boolean, target: string): Promise<TicketEvent> {
  return new Promise((resolve, reject) => {
    const check = setInterval(() => {
      const letter = parked.find((reason) => reason.includes(target));
      if (letter) {
        clearInterval(check);
        reject(new Error(`parked instead of routed: ${letter}`));
      }
    }, 50);
    gw.waitForEvent(pred).then(
      (e) => {
        clearInterval(check);
        resolve(e);
      },
      (err: unknown) => {
        clearInterval(check);
        reject(err instanceof Error ? err : new Error(String(err)));
      },
    );
  });
}

beforeAll(async () => {
  slack = new FakeSlack(BOT);
  await slack.start();
  gw = await startGateway(
    { connectors: [{ type: 'slack', account: 'order_socket', mode: 'socket', botToken: '${BOT}', appToken: '${APP}', apiUrl: slack.apiUrl, channels: ['CORDER'], perChannelIntervalMs: 0 }] },
    { env: { BOT, APP } },
  );
  parkedSub = gw.nc.subscribe('omni.dlq.router', {
    callback: (err, m) => {
      if (!err) parked.push(m.json<DeadLetter>().reason);
    },
  });
  for (let i = 0; i < 100 && slack.connections === 0; i++) await new Promise((r) => setTimeout(r, 50));
});
afterAll(async () => {
  parkedSub?.unsubscribe();
  await gw?.stop();
  await slack?.stop();
});

describe('slack burst order', () => {
  it('a first post and three replies pushed back to back, ten threads at once, are logged in the order Slack sent them', async () => {
    const threads = Array.from({ length: 10 }, (_, i) => ({ top: ts(), user: `UORD${i}`, n: i }));
    // All forty frames back to back: each sender new to users.info, each first post remembering its thread in KV.
    for (const t of threads) {
      slack.pushSocketEvent(post(t.user, `тред ${t.n}: не проходит оплата`, t.top));
      for (let r = 1; r <= 3; r++) slack.pushSocketEvent(post(t.user, `тред ${t.n}: ответ ${r}`, ts(), t.top));
    }
    const wrong: string[] = [];
    for (const t of threads) {
      const last = await gw.waitForEvent((e) => e.type === 'ticket.message' && inboundOf(e)?.text === `тред ${t.n}: ответ 3`);
      for (let r = 0; r < 3; r++) await gw.waitForEvent((e) => e.type === 'ticket.message' && e.ticketId === last.ticketId && inboundOf(e)?.text === (r === 0 ? `тред ${t.n}: не проходит оплата` : `тред ${t.n}: ответ ${r}`));
      const log = await logOf(last.ticketId);
      const expected = [`inbound:тред ${t.n}: не проходит оплата`, ...[1, 2, 3].map((r) => `inbound:тред ${t.n}: ответ ${r}`)];
      if (JSON.stringify(log) !== JSON.stringify(expected)) wrong.push(`thread ${t.n}: ${log.join(' | ')}`);
    }
    expect(wrong).toEqual([]);
  });

  it('replies wait for a first post still fetching its file, and are logged after it', async () => {
    const bytes = Buffer.from('выписка за ноябрь\n'.repeat(200));
    slack.files.set('FORD1', bytes);
    let release!: () => void;
    slack.downloadGate = new Promise((r) => (release = r));
    const arrived = slack.nextDownload();
    const top = ts();
    slack.pushSocketEvent(envelope({ type: 'message', subtype: 'file_share', channel: 'CORDER', channel_type: 'channel', user: 'UORDF', text: 'выписка во вложении', ts: top,
      files: [{ id: 'FORD1', name: 'statement.txt', mimetype: 'text/plain', size: bytes.length, url_private_download: `http://127.0.0.1:${slack.port}/files/FORD1` }] }));
    // A sender of their own, so their users.info call shows the reply is being prepared.
    slack.pushSocketEvent(post('UORDR', 'там не та сумма', ts(), top));
    slack.pushSocketEvent(post('UORDR', 'и не та дата', ts(), top));
    await arrived; // the first post is held on its download
    await slack.waitForCall((c) => c.method === 'users.info' && c.params.user === 'UORDR');
    release();
    slack.downloadGate = undefined;
    const last = await gw.waitForEvent((e) => e.type === 'ticket.message' && inboundOf(e)?.text === 'и не та дата');
    const first = await gw.waitForEvent((e) => e.type === 'ticket.message' && inboundOf(e)?.text === 'выписка во вложении');
    expect(first.ticketId).toBe(last.ticketId);
    expect(await logOf(last.ticketId)).toEqual(['inbound:выписка во вложении', 'inbound:там не та сумма', 'inbound:и не та дата']);
  });

  it('an edit and a deletion pushed right after their originals are attached to them, not parked', async () => {
    for (let i = 0; i < 4; i++) {
      const user = `UORDE${i}`;
      const top = ts();
      const reply = ts();
      slack.pushSocketEvent(post(user, `правка ${i}: заказ 55${i}`, top));
      slack.pushSocketEvent(post(user, `правка ${i}: опечатка`, reply, top));
      // Slack names the thread only in the nested message / previous_message.
      slack.pushSocketEvent(envelope({ type: 'message', subtype: 'message_changed', channel: 'CORDER', channel_type: 'channel', hidden: true, ts: ts(),
        message: { type: 'message', user, text: `правка ${i}: исправлено`, ts: reply, thread_ts: top, edited: { user, ts: ts() } },
        previous_message: { type: 'message', user, text: `правка ${i}: опечатка`, ts: reply, thread_ts: top } }));
      slack.pushSocketEvent(envelope({ type: 'message', subtype: 'message_deleted', channel: 'CORDER', channel_type: 'channel', hidden: true, ts: ts(), deleted_ts: top,
        previous_message: { type: 'message', user, text: `правка ${i}: заказ 55${i}`, ts: top, thread_ts: top } }));
      const edited = await routedOrParked((e) => e.type === 'ticket.edited' && (e.entry as Extract<LogEntry, { kind: 'edited' }>).event.targetPlatformMessageId === `CORDER:${reply}`, `CORDER:${reply}`);
      await routedOrParked((e) => e.type === 'ticket.deleted' && e.ticketId === edited.ticketId, `CORDER:${top}`);
      expect(await logOf(edited.ticketId)).toEqual([`inbound:правка ${i}: заказ 55${i}`, `inbound:правка ${i}: опечатка`, `edited:правка ${i}: исправлено`, `deleted:CORDER:${top}`]);
    }
    // A DM: its message and edit back to back.
    const dm = ts();
    slack.pushSocketEvent(envelope({ type: 'message', channel: 'DORDER', channel_type: 'im', user: 'UORDD', text: 'счёт 77', ts: dm }));
    slack.pushSocketEvent(envelope({ type: 'message', subtype: 'message_changed', channel: 'DORDER', channel_type: 'im', hidden: true, ts: ts(),
      message: { type: 'message', user: 'UORDD', text: 'счёт 78', ts: dm, edited: { user: 'UORDD', ts: ts() } } }));
    const edited = await routedOrParked((e) => e.type === 'ticket.edited' && (e.entry as Extract<LogEntry, { kind: 'edited' }>).event.targetPlatformMessageId === `DORDER:${dm}`, `DORDER:${dm}`);
    expect(await logOf(edited.ticketId)).toEqual(['inbound:счёт 77', 'edited:счёт 78']);
    expect(parked).toEqual([]);
  });
});
