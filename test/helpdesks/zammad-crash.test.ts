/**
 * `kill -9` of the gateway process after Zammad created the ticket and before omnigate recorded
 * its id: the restarted gateway finds the ticket by our id in the custom field and creates no
 * second one; the conversation goes on in that ticket.
 */
import { afterAll, afterEach, beforeAll, expect, it } from 'vitest';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { Kvm } from '@nats-io/kv';
import { startNats, type TestNats } from '../helpers/nats-server.js';
import { spawnGateway, writeConfig, type GatewayProcess } from '../helpers/process.js';
import { FakeBotApi } from '../connectors/telegram/bot-api.js';
import { ZammadStandin } from '../helpers/zammad-standin.js';
import { until } from './form-post.js';
import type { Ticket } from '../../src/core/schema.js';

const TG_TOKEN = '123456:TEST-token-abcdefghijklmnop';
const ZAMMAD_TOKEN = 'zammad-token-0123456789abcdef';
let nats: TestNats;
let nc: NatsConnection;
let api: FakeBotApi;
let zammad: ZammadStandin;
const running: GatewayProcess[] = [];

beforeAll(async () => {
  nats = await startNats();
  nc = await connect({ servers: nats.url });
  api = new FakeBotApi(TG_TOKEN);
  await api.start();
  zammad = new ZammadStandin({ token: ZAMMAD_TOKEN });
  await zammad.start();
});
afterEach(async () => {
  await Promise.all(running.splice(0).map((p) => p.kill('SIGKILL')));
});
afterAll(async () => {
  await zammad?.stop();
  await api?.stop();
  await nc?.close();
  await nats?.stop();
});

function gatewayProcess(): GatewayProcess {
  const file = writeConfig({
    nats: { url: nats.url, leaseTtl: '2s' },
    http: { host: '127.0.0.1', port: 0 },
    log: { level: 'debug' },
    shutdownDrain: 0,
    router: { autoAcknowledge: { enabled: false } },
    connectors: [{ type: 'telegram', account: 'bot1', token: '${TG_TOKEN}', apiRoot: api.apiRoot, pollTimeoutS: 1, pacing: { privateChatIntervalMs: 0, groupIntervalMs: 0 } }],
    helpdesks: [{ type: 'zammad', id: 'zammad', url: zammad.url, token: '${ZAMMAD_TOKEN}', poll: { interval: 0 }, backoffBase: '100ms', backoffMax: '500ms', redeliverAfter: '2s' }],
  });
  const p = spawnGateway(file, { env: { TG_TOKEN, ZAMMAD_TOKEN } });
  running.push(p);
  return p;
}


it('creates one Zammad ticket when the gateway is killed between "created in Zammad" and "id recorded"', async () => {
  const first = gatewayProcess();
  await first.started;
  let killed = false;
  zammad.onTicketCreated = async () => {
    if (killed) return;
    killed = true;
    // Zammad has the ticket; the gateway dies before it hears the answer.
    first.child.kill('SIGKILL');
    await first.exited;
  };
  api.push({ message: { message_id: 1, date: Math.floor(Date.now() / 1000), chat: { id: 9001, type: 'private', first_name: 'Иван' }, from: { id: 9001, is_bot: false, first_name: 'Иван' }, text: 'Помогите, пожалуйста' } });
  await until('the gateway killed', () => killed && first.child.exitCode === null && first.child.signalCode === 'SIGKILL');
  expect(zammad.tickets.size).toBe(1);
  const zt = [...zammad.tickets.values()][0]!;
  // The field holds the ticket id and the installation's: T-1001@<installation>.
  const ticketId = String(zt.omnigate_ticket).split('@')[0]!;

  const second = gatewayProcess();
  await second.started;
  const kv = await new Kvm(nc).open('omni_tickets');
  const linked = await until('the omnigate ticket linked', async () => {
    const e = await kv.get(ticketId);
    const t = e?.operation === 'PUT' ? (e.json() as Ticket) : null;
    return t?.externalRefs?.[0];
  });
  expect(linked).toMatchObject({ system: 'zammad', externalId: String(zt.id) });
  expect(second.output()).toContain('an earlier attempt made it');
  expect([...zammad.tickets.values()].filter((t) => String(t.omnigate_ticket).startsWith(`${ticketId}@`))).toHaveLength(1);
  expect(zammad.ticketArticles(zt.id)).toHaveLength(1);

  // The conversation goes on in that ticket.
  api.push({ message: { message_id: 2, date: Math.floor(Date.now() / 1000), chat: { id: 9001, type: 'private', first_name: 'Иван' }, from: { id: 9001, is_bot: false, first_name: 'Иван' }, text: 'Ещё одно сообщение' } });
  await until('the second article', () => zammad.ticketArticles(zt.id).length === 2);
  expect(zammad.tickets.size).toBe(1);
}, 180_000);
