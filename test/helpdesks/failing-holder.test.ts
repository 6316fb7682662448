/**
 * A helpdesk adapter's lease holder whose consumer loop keeps failing gives the lease up (as the
 * webhook dispatcher does, test/api/webhook-failing-holder.test.ts): two gateways sync one Zammad;
 * the syncing one's pulls of the helpdesk durable are made to fail ("JetStream system temporarily
 * unavailable", as after a trial's cluster restart); the other takes over and syncs what follows.
 */
import { jetstream } from '@nats-io/jetstream';
import { connect } from '@nats-io/transport-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Streams } from '../../src/core/subjects.js';
import { helpdeskConsumer } from '../../src/helpdesks/host.js';
import { startGateway, type TestGateway } from '../helpers/gateway.js';
import { postForm, until, zammadFormConfig } from './form-post.js';
import { startNats, type TestNats } from '../helpers/nats-server.js';
import { ZammadStandin } from '../helpers/zammad-standin.js';

const ZAMMAD_TOKEN = 'zammad-token-0123456789abcdef';
const FORM_SECRET = 'failing-holder-form-secret-0123456789';
let nats: TestNats;
let zammad: ZammadStandin;
const gateways: TestGateway[] = [];
let restoreFetch = () => {};

beforeAll(async () => {
  nats = await startNats();
  zammad = new ZammadStandin({ token: ZAMMAD_TOKEN });
  await zammad.start();
});
afterAll(async () => {
  restoreFetch();
  for (const gw of gateways) await gw.stop();
  await zammad?.stop();
  await nats?.stop();
});

async function gateway(): Promise<TestGateway> {
  const gw = await startGateway(zammadFormConfig(zammad.url, { nats: { leaseTtl: '3s' } }), { nats, env: { ZAMMAD_TOKEN, FORM_SECRET } });
  gateways.push(gw);
  return gw;
}

const post = (gw: TestGateway, messageId: string, text: string) => postForm(gw, FORM_SECRET, messageId, text);

const syncing = (gw: TestGateway) => gw.gateway.helpdesks?.health().some((h) => h.syncing) ?? false;

describe('a helpdesk holder whose consumer keeps failing', () => {
  it('releases the lease; the other gateway syncs what follows', async () => {
    const first = await gateway();
    await until('the first gateway syncing', () => syncing(first));
    const second = await gateway();
    await post(first, 'm-1', 'Не проходит оплата');
    await until('the ticket in Zammad', () => zammad.tickets.size === 1);

    // Every pull of the helpdesk durable over the first gateway's connection fails from now on.
    const nc = await connect({ servers: nats.url });
    const probe = await jetstream(nc).consumers.get(Streams.events, helpdeskConsumer('zammad'));
    await nc.close();
    const proto = Object.getPrototypeOf(probe) as { fetch: (this: { api: { nc: unknown }; name: string }, ...a: unknown[]) => Promise<unknown> };
    const fetchOf = proto.fetch;
    const broken = first.gateway.bus.nc;
    proto.fetch = function (...a) {
      if (this.api.nc === broken && this.name === helpdeskConsumer('zammad')) return Promise.reject(new Error('JetStream system temporarily unavailable'));
      return fetchOf.apply(this, a);
    };
    restoreFetch = () => (proto.fetch = fetchOf);

    await until('the second gateway taking the helpdesk over', () => syncing(second), 60_000);
    expect(first.logs.join('\n')).toContain('helpdesk consumer kept failing on this replica');
    await post(second, 'm-2', 'Оплата прошла, спасибо');
    await until('the second message in Zammad', () => [...zammad.articles.values()].some((a) => String(a.body).includes('Оплата прошла')));
    expect(zammad.tickets.size).toBe(1);
    expect(syncing(first)).toBe(false);
  }, 120_000);
});
