/**
 * What an outbound runner test stands on: a throwaway nats-server and a provisioned bus on it (the
 * file's beforeAll and afterAll, registered here), an agent's reply on one chat channel, and the
 * delivery status a runner publishes for an account.
 */
import { afterAll, beforeAll } from 'vitest';
import { Bus, type BusOptions } from '../../../src/core/bus.js';
import type { Logger } from '../../../src/core/logger.js';
import { DeliveryStatus, OutboundMessage } from '../../../src/core/schema.js';
import { Streams, Subjects } from '../../../src/core/subjects.js';
import { startNats, type TestNats } from '../../helpers/nats-server.js';
import { until } from '../../helpers/until.js';

export const busOptions = (url: string): BusOptions => ({ url, replicas: 1, duplicateWindowMs: 120_000, retentionMs: 86_400_000, dedupTtlMs: 86_400_000, leaseTtlMs: 3000 });

export interface RuntimeRig {
  nats: TestNats;
  bus: Bus;
  /** Reply `id` to a private chat of `account`, in the rig's ticket, with the rig's text. */
  outbound(account: string, id: string): OutboundMessage;
  /** The latest delivery status of the account's replies, once one is published. */
  statusOf(account: string): Promise<DeliveryStatus>;
}

export function runtimeRig(o: { channel: string; log: Logger; ticketId: string; text: string }): RuntimeRig {
  const rig: RuntimeRig = {
    nats: undefined as unknown as TestNats,
    bus: undefined as unknown as Bus,
    outbound: (account, id) =>
      OutboundMessage.parse({
        v: 1, type: 'message.outbound', id, ticketId: o.ticketId, channel: o.channel, account,
        conversation: { id: `c-${id}`, kind: 'private' }, text: o.text, author: { id: 'agent-1', name: 'Оператор' }, createdAt: new Date().toISOString(),
      }),
    async statusOf(account) {
      let found: DeliveryStatus | undefined;
      await until(async () => {
        const m = await rig.bus.jsm.streams.getMessage(Streams.status, { last_by_subj: Subjects.status(o.channel, account) }).catch(() => null);
        found = m ? DeliveryStatus.parse(m.json()) : undefined;
        return found !== undefined;
      }, `a delivery status for ${account}`, 20_000);
      return found!;
    },
  };
  beforeAll(async () => {
    rig.nats = await startNats();
    rig.bus = await Bus.connect(busOptions(rig.nats.url), o.log);
    await rig.bus.provision();
  });
  afterAll(async () => {
    await rig.bus?.close();
    await rig.nats?.stop();
  });
  return rig;
}
