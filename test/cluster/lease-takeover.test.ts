/**
 * kill -9 of the gateway replica holding every lease — a Telegram bot's polling (against the Bot
 * API stand-in), an IMAP mailbox on Dovecot, and the delivery of a ticket-event webhook — while
 * messages keep coming on all three. Another replica takes each over; takeover time is measured
 * from the kill to the successor's first getUpdates, the first new mail on the bus, and the
 * first webhook POST under a newer lease token (reported, not asserted: the aim is
 * leaseTtl + 2 s). Nothing is processed twice: every update and mail once in a ticket log.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { existsSync } from 'node:fs';
import { Kvm } from '@nats-io/kv';
import { jetstream } from '@nats-io/jetstream';
import { connect, type NatsConnection, type Subscription } from '@nats-io/transport-node';
import { Fleet } from './fleet.js';
import { FakeBotApi } from '../connectors/telegram/bot-api.js';
import { dovecotBinary, startDovecot, type TestDovecot } from '../helpers/dovecot.js';
import { plainMail } from '../connectors/email/mails.js';

const TG_TOKEN = '123456:cluster-takeover-token';
const MAILBOX = 'support@example.ru';
const PASSWORD = 'imap-secret-pw';
const LEASE_TTL_MS = 3000;
const haveDovecot = existsSync(dovecotBinary());

const bot = new FakeBotApi(TG_TOKEN);
let dovecot: TestDovecot | undefined;
let nc: NatsConnection;
const fleet = new Fleet({
  leaseTtl: `${LEASE_TTL_MS}ms`,
  connectors: () => [
    { type: 'telegram', account: 'bot', token: TG_TOKEN, apiRoot: bot.apiRoot, pollTimeoutS: 1, pacing: { privateChatIntervalMs: 0, groupIntervalMs: 0 } },
    ...(dovecot
      ? [{
          type: 'email', account: 'support', firstRun: 'all', pollIntervalMs: 250,
          mailboxes: [{ address: MAILBOX, name: 'Поддержка', imap: { host: dovecot.host, port: dovecot.port, secure: false, starttls: false, user: MAILBOX, pass: PASSWORD }, smtp: { host: '127.0.0.1', port: 9, secure: false, starttls: false } }],
        }]
      : []),
  ],
});

beforeAll(async () => {
  await bot.start();
  if (haveDovecot) {
    dovecot = await startDovecot();
    await dovecot.addUser(MAILBOX, PASSWORD);
  } else {
    console.log(`lease takeover: ${dovecotBinary()} absent (.ci/run installs dovecot-imapd): the mailbox part is left out`);
  }
  await fleet.start(3);
  nc = await connect({ servers: fleet.cluster.nodes.map((n) => n.url), maxReconnectAttempts: -1 });
}, 150_000);

afterAll(async () => {
  await nc?.close();
  await fleet.stop();
  await bot.stop();
  await dovecot?.stop();
});

let messageId = 1;
function update(chat: number) {
  return { message: { message_id: messageId++, date: Math.floor(Date.now() / 1000), chat: { id: chat, type: 'private', first_name: 'Ольга' }, from: { id: chat, is_bot: false, first_name: 'Ольга' }, text: `сообщение ${messageId}` } };
}

async function leaseHolders(): Promise<Record<string, string>> {
  // A generous timeout: listing keys makes a consumer, and a loaded 2-core CI machine once took
  // longer than the client's default 5 s to answer that (a timeout of the test, not the gateway).
  const kv = await new Kvm(jetstream(nc, { timeout: 30_000 })).open('omni_leases');
  const holders: Record<string, string> = {};
  for await (const key of await kv.keys()) {
    if (key.startsWith('router.')) continue; // conversation partitions: spread over the replicas by design
    if (key === 'eviction') continue; // the background sweep of closed tickets: whichever replica takes it
    const e = await kv.get(key);
    if (e?.operation === 'PUT') holders[key] = e.string();
  }
  return holders;
}

async function until(pred: () => boolean, what: string, timeoutMs = 60_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!pred()) {
    if (Date.now() > deadline) throw new Error(`${what} not within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

describe('lease takeover', () => {
  it('kill -9 of the replica holding the polling, mailbox and webhook leases: each taken over, nothing processed twice', async () => {
    const imap = dovecot ? await dovecot.client(MAILBOX, PASSWORD) : undefined;
    const mails: string[] = [];
    const sendMail = async (n: number) => {
      const id = `<takeover-${n}@client.example.ru>`;
      mails.push(id);
      await imap!.append('INBOX', plainMail({ messageId: id, subject: `Письмо ${n}`, from: `Клиент ${n} <client${n}@example.ru>` }));
    };
    // Before the kill: traffic on every channel, all leases held by the first replica.
    for (let i = 0; i < 20; i++) bot.push(update(9000 + (i % 5)));
    for (let i = 0; imap && i < 5; i++) await sendMail(i);
    const firstIds = await fleet.load({ total: 60, conversations: 10, perSecond: 30 });
    await until(() => fleet.hook.length > 0, 'first webhook post');
    const holders = await leaseHolders();
    // Holder ids are `<pid>-<random>`: the pid names the gateway process.
    const pids = new Set(Object.values(holders).map((h) => Number(h.split('-')[0])));
    console.log(`leases before the kill: ${JSON.stringify(holders)}`);
    expect(Object.keys(holders).length).toBe(imap ? 3 : 2);
    expect(pids.size).toBe(1); // the first replica started alone and took them all
    const victim = fleet.gateways.findIndex((g) => g?.process.child.pid === [...pids][0]);
    expect(victim).toBeGreaterThanOrEqual(0);

    const oldToken = Math.max(...fleet.hook.map((p) => p.token));
    const inboundEmail: Subscription = nc.subscribe('omni.in.email.>');
    let firstMailAfter = 0;
    void (async () => {
      for await (const _ of inboundEmail) if (!firstMailAfter) firstMailAfter = Date.now();
    })();
    const pollsBefore = bot.offsets.length;
    const killedAt = Date.now();
    await fleet.stopGateway(victim, 'SIGKILL');
    let firstPollAfter = 0;
    const pollWatch = until(() => bot.offsets.length > pollsBefore, 'a getUpdates from a successor').then(() => (firstPollAfter = Date.now()));
    // Traffic keeps coming during the takeover.
    for (let i = 0; i < 20; i++) bot.push(update(9000 + (i % 5)));
    for (let i = 5; imap && i < 10; i++) await sendMail(i);
    const laterIds = await fleet.load({ total: 60, conversations: 10, perSecond: 30, from: 60 });
    await pollWatch;
    await until(() => fleet.hook.some((p) => p.token > oldToken), 'a webhook post under a newer lease token');
    const firstHookAfter = fleet.hook.find((p) => p.token > oldToken)!.at;
    if (imap) await until(() => firstMailAfter > 0, 'a mail on the bus after the kill');
    await imap?.logout();
    inboundEmail.unsubscribe();

    // verify() waits for the webhook load only. The updates and mails sent after the kill reach
    // their ticket logs through a successor's poller and the partitions the dead replica owned,
    // each taken over after the lease TTL: they may land later than the load (a loaded CI run once
    // read the logs with one chat's four updates and one mail not yet routed). So wait for them,
    // bounded: a message that is lost still fails below.
    const ids = [...new Set([...firstIds, ...laterIds])];
    const verifyStart = Date.now();
    let report = await fleet.verify(ids);
    const complete = (r: typeof report) => r.loggedByChannel.telegram === 40 && (!imap || r.loggedByChannel.email === 10);
    let lookedAgain = 0;
    while (!complete(report) && Date.now() - verifyStart < 60_000) {
      await new Promise((r) => setTimeout(r, 1000));
      report = await fleet.verify(ids);
      lookedAgain++;
    }
    if (lookedAgain) console.log(`telegram and email entries looked for again ${lookedAgain} time(s), ${Date.now() - verifyStart} ms in all: ${complete(report) ? 'all there' : 'still missing'}`);
    const takeover = {
      telegram: firstPollAfter - killedAt,
      email: imap ? firstMailAfter - killedAt : undefined,
      webhook: firstHookAfter - killedAt,
    };
    console.log(`lease takeover (leaseTtl ${LEASE_TTL_MS} ms): ${JSON.stringify(takeover)} ms; ${JSON.stringify(report)}`);
    expect(report.problems).toEqual([]);
    expect(report.loggedByChannel.telegram).toBe(40);
    if (imap) expect(report.loggedByChannel.email).toBe(10);
    // The stand-in served some updates to both holders (the old one had not confirmed them): the
    // ticket logs above hold each once, which is what "not processed twice" means downstream.
    console.log(`updates served more than once by the stand-in: ${[...bot.served.values()].filter((n) => n > 1).length}; getUpdates conflicts (409): ${bot.conflicts}`);
  }, 240_000);
});
