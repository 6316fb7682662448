/**
 * The helpdesk host takes what a holder that died left unacknowledged first, in stream order, and
 * not after `redeliverAfter` behind newer events of its ticket (the webhook dispatcher has done
 * this since issue 17; the host had not). The dead holder is staged, so it happens every time:
 * with no gateway running, another client takes one ticket event from the host's durable and
 * never answers, as a process killed mid-sync would. `redeliverAfter` is 10 minutes: without the
 * rewind that event waits that long.
 */
import { jetstream, jetstreamManager } from '@nats-io/jetstream';
import { connect } from '@nats-io/transport-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Streams } from '../../src/core/subjects.js';
import { helpdeskConsumer } from '../../src/helpdesks/host.js';
import { startGateway, type TestGateway } from '../helpers/gateway.js';
import { postForm, until, zammadFormConfig } from './form-post.js';
import { startNats, type TestNats } from '../helpers/nats-server.js';
import { ZammadStandin } from '../helpers/zammad-standin.js';

const ZAMMAD_TOKEN = 'zammad-token-0123456789abcdef';
const FORM_SECRET = 'host-rewind-form-secret-0123456789';
let nats: TestNats;
let zammad: ZammadStandin;
const gateways: TestGateway[] = [];

beforeAll(async () => {
  nats = await startNats();
  zammad = new ZammadStandin({ token: ZAMMAD_TOKEN });
  await zammad.start();
});
afterAll(async () => {
  for (const gw of gateways) await gw.stop();
  await zammad?.stop();
  await nats?.stop();
});

async function gateway(): Promise<TestGateway> {
  const gw = await startGateway(zammadFormConfig(zammad.url), { nats, env: { ZAMMAD_TOKEN, FORM_SECRET } });
  gateways.push(gw);
  return gw;
}

const post = (gw: TestGateway, messageId: string, text: string) => postForm(gw, FORM_SECRET, messageId, text);

describe('helpdesk host after a holder that died', () => {
  it('syncs again from the ack floor what it left unacknowledged, at once and in order', async () => {
    const nc = await connect({ servers: nats.url });
    try {
      const jsm = await jetstreamManager(nc);
      const durable = helpdeskConsumer('zammad');
      const settled = async () => {
        const info = await jsm.consumers.info(Streams.events, durable);
        return info.num_pending === 0 && info.num_ack_pending === 0;
      };
      const first = await gateway();
      await post(first, 'm-1', 'Не проходит оплата');
      await until('the ticket in Zammad', () => zammad.tickets.size === 1);
      await until('the first events synced', settled);
      await first.stop();
      gateways.splice(gateways.indexOf(first), 1);

      // The holder that died: a ticket event (a copy of the newest) taken from the durable and
      // never answered. Its id is synced already: taken again, it is found done.
      let seq = (await jsm.streams.info(Streams.events)).state.last_seq;
      const at = async (n: number) => (await jsm.streams.getMessage(Streams.events, { seq: n }))!;
      let event = await at(seq);
      while (!event.subject.startsWith('omni.events.ticket.')) event = await at(--seq);
      await jetstream(nc).publish(event.subject, event.data);
      const orphan = await (await jetstream(nc).consumers.get(Streams.events, durable)).next({ expires: 5_000 });
      expect(orphan?.subject).toBe(event.subject);
      expect((await jsm.consumers.info(Streams.events, durable)).num_ack_pending).toBe(1);

      const second = await gateway();
      await until('the orphan synced again and everything acknowledged, long before redeliverAfter', settled);
      expect(second.logs.join('\n')).toContain('events left unacknowledged by the previous term');
      // And the ticket goes on in order: the next message lands in the same Zammad ticket.
      await post(second, 'm-2', 'Оплата прошла, спасибо');
      await until('the second message in Zammad', () => [...zammad.articles.values()].some((a) => String(a.body).includes('Оплата прошла')));
      await until('the second message synced', settled);
      expect(zammad.tickets.size).toBe(1);
    } finally {
      await nc.close();
    }
  });
});
