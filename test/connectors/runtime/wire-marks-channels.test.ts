/**
 * Every channel marks the wire (contract.ts `marksWire`), through its real library against the
 * stand-ins. An outside trial killed a gateway (kill -9) while replies waited in a connector's
 * pacer: none had reached the platform, yet all came back `outcome_unknown`, because the whole of
 * send() counted as "maybe sent". Telegram and WhatsApp Cloud were fixed first; Slack and email
 * are shown here: a reply pacing in a gateway that dies is `claimed`, and the next gateway sends it
 * exactly once. For SMTP, what the server certainly did not take (refused at RCPT) is taken back;
 * what failed after the body went out stays "maybe sent".
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Bus } from '../../../src/core/bus.js';
import { createLogger } from '../../../src/core/logger.js';
import { OutboundMessage } from '../../../src/core/schema.js';
import { Subjects, kvSafe } from '../../../src/core/subjects.js';
import { OutboundRunner } from '../../../src/connectors/outbound-runner.js';
import type { Connector, ConnectorContext, SendAttempt } from '../../../src/connectors/contract.js';
import { SlackConnector } from '../../../src/connectors/slack/connector.js';
import { SlackOptions } from '../../../src/connectors/slack/index.js';
import { EmailConnector } from '../../../src/connectors/email/connector.js';
import { EmailOptions } from '../../../src/connectors/email/index.js';
import { startNats, type TestNats } from '../../helpers/nats-server.js';
import { startSmtp, type TestSmtp } from '../../helpers/smtp.js';
import { until } from '../../helpers/until.js';
import { FakeSlack } from '../slack/slack-api.js';

const log = createLogger({ level: 'silent' });
const SUPPORT = 'support@example.ru';

let nats: TestNats;
let smtp: TestSmtp;
let slack: FakeSlack;
const buses: Bus[] = [];
/** Aborted at the end: the connectors of the gateways that "died" still sleep in their pacers. */
const leftovers = new AbortController();
/** Stopped at the end: a pooled SMTP connection left open holds the stand-in's close for 30 s. */
const connectors: Connector[] = [];
const made = <C extends Connector>(c: C): C => (connectors.push(c), c);

beforeAll(async () => {
  [nats, smtp] = await Promise.all([startNats(), startSmtp()]);
  slack = new FakeSlack('xoxb-wire-marks');
  await slack.start();
});
afterAll(async () => {
  leftovers.abort();
  await Promise.all(connectors.map((c) => c.stop()));
  for (const b of buses) if (!b.nc.isClosed()) await b.nc.close();
  await slack?.stop();
  await smtp?.stop();
  await nats?.stop();
});

async function bus(): Promise<Bus> {
  const b = await Bus.connect({ url: nats.url, replicas: 1, duplicateWindowMs: 120_000, retentionMs: 86_400_000, dedupTtlMs: 86_400_000, leaseTtlMs: 5_000 }, log);
  buses.push(b);
  await b.provision();
  return b;
}

/** What send() needs of the context; the gateway's own is not started here. */
function context(channel: string, account: string, signal: AbortSignal): ConnectorContext {
  return {
    channel, account, installationId: 'wire-test', messageIdSecret: new Uint8Array(32), channelAddresses: new Set<string>(), log, signal,
    media: { get: async (key: string) => (key.startsWith('file-') ? new Uint8Array(Buffer.from('%PDF-1.4 счёт')) : null), maxBytes: 1_000_000 },
    onReplay: () => {},
    setState: () => {},
  } as unknown as ConnectorContext;
}

const runnerOptions = { maxAttempts: 3, backoffBaseMs: 50, backoffMaxMs: 200, ackWaitMs: 2_000, concurrency: 4 };

interface Channel {
  channel: string;
  account: string;
  /** A connector whose pacer holds a second reply to the same conversation for a minute. */
  connector(signal: AbortSignal): Connector;
  reply(id: string): OutboundMessage;
  /** Replies the platform got, by outbound id. */
  delivered(id: string): number;
}

/**
 * Gateway A sends two replies of one conversation: the first goes, the second waits in the pacer.
 * A dies (its NATS connection dropped, as kill -9 leaves it). Gateway B, which knows A is dead,
 * gets the second reply again after ack_wait.
 */
async function killedWhilePacing(c: Channel): Promise<void> {
  const [a, b] = [await bus(), await bus()];
  const marker = async (id: string) => (await b.kv.dedup.get(`out.${kvSafe(id)}`))?.json<{ s: string; attempts: number }>();
  const runnerA = new OutboundRunner(a, c.channel, c.account, c.connector(leftovers.signal), log, { ...runnerOptions, replica: 'rA' });
  await runnerA.start();
  const [first, second] = [c.reply(`${c.account}-1`), c.reply(`${c.account}-2`)];
  for (const m of [first, second]) await a.publishJson(Subjects.outbound(c.channel, c.account), m, m.id);
  await until(async () => (await marker(first.id))?.s === 'sent', 'the first reply sent');
  await until(async () => (await marker(second.id)) !== undefined, 'the second reply taken up');
  await new Promise((r) => setTimeout(r, 300));
  // Waiting in the pacer: nothing of it reached the platform, and the marker says so.
  expect(c.delivered(second.id)).toBe(0);
  expect((await marker(second.id))?.s).toBe('claimed');

  await a.nc.close();
  const runnerB = new OutboundRunner(b, c.channel, c.account, c.connector(leftovers.signal), log, { ...runnerOptions, replica: 'rB', deadReplicas: ['rA'] });
  await runnerB.start();
  try {
    await until(async () => (await marker(second.id))?.s === 'sent', 'the second reply sent by the next gateway', 20_000);
    // The claim was no attempt: this is its first call to the platform, and its only one.
    expect(await marker(second.id)).toMatchObject({ s: 'sent', attempts: 1 });
    expect(c.delivered(first.id)).toBe(1);
    expect(c.delivered(second.id)).toBe(1);
  } finally {
    await runnerB.stop();
  }
}

function outbound(channel: string, account: string, id: string, conversation: string, extra: Record<string, unknown> = {}): OutboundMessage {
  return OutboundMessage.parse({
    v: 1, type: 'message.outbound', id, ticketId: 'T-903', channel, account,
    conversation: { id: conversation, kind: 'private' }, text: `Ответ ${id}`, author: { id: 'agent-1' }, createdAt: new Date().toISOString(), ...extra,
  });
}

function mailbox(extra: Record<string, unknown> = {}) {
  return EmailOptions.parse({
    mailboxes: [{
      address: SUPPORT, name: 'Служба поддержки',
      imap: { host: '127.0.0.1', port: 1, secure: false, starttls: false, user: SUPPORT, pass: 'x' },
      smtp: { host: smtp.host, port: smtp.port, secure: false, starttls: false, ...extra },
    }],
  });
}

const mailTo = (customer: string) => ({ email: { to: [customer], subject: 'Re: Заказ' } });

describe('a reply pacing in a gateway that dies is claimed, and sent once by the next gateway', () => {
  it('Slack', async () => {
    const options = SlackOptions.parse({ botToken: slack.botToken, appToken: 'xapp-1', apiUrl: slack.apiUrl, perChannelIntervalMs: 60_000 });
    const posted = (id: string) => slack.calls.filter((x) => x.method === 'chat.postMessage' && x.params.text === `Ответ ${id}`).length;
    await killedWhilePacing({
      channel: 'slack', account: 'wire',
      connector: (signal) => made(new SlackConnector(options, context('slack', 'wire', signal))),
      reply: (id) => outbound('slack', 'wire', id, 'CWIRE1'),
      delivered: posted,
    });
  });

  it('email (smtp.perMinute)', async () => {
    const options = mailbox({ perMinute: 1 });
    // One customer address per reply, to count what the server took of each.
    await killedWhilePacing({
      channel: 'email', account: 'paced',
      connector: (signal) => made(new EmailConnector(options, context('email', 'paced', signal))),
      reply: (id) => outbound('email', 'paced', id, SUPPORT, mailTo(`${id}@example.com`)),
      delivered: (id) => smtp.received.filter((m) => m.to.includes(`${id}@example.com`)).length,
    });
  });
});

/** The marks one send() made, in order. */
function recorder(): { marks: string[]; attempt: SendAttempt } {
  const marks: string[] = [];
  return { marks, attempt: { attempt: 1, onWire: async () => void marks.push('on'), offWire: async () => void marks.push('off') } };
}

describe('SMTP: taken back only when the server certainly has nothing of the message', () => {
  it('a refusal at RCPT TO leaves the reply claimed', async () => {
    const connector = made(new EmailConnector(mailbox(), context('email', 'rcpt', leftovers.signal)));
    const customer = 'refused-rcpt@example.com';
    smtp.rejectRecipient(customer, 451, 'Try again later', 1);
    const { marks, attempt } = recorder();
    await expect(connector.send(outbound('email', 'rcpt', 'rcpt-1', SUPPORT, mailTo(customer)), attempt)).rejects.toThrow(/451/);
    expect(marks).toEqual(['on', 'off']);
  });

  it('a server that cannot be reached leaves the reply claimed', async () => {
    const connector = made(new EmailConnector(mailbox({ port: 1, timeoutMs: 2_000 }), context('email', 'down', leftovers.signal)));
    const { marks, attempt } = recorder();
    await expect(connector.send(outbound('email', 'down', 'down-1', SUPPORT, mailTo('client@example.com')), attempt)).rejects.toThrow();
    expect(marks).toEqual(['on', 'off']);
  });

  it('a connection lost after the body went out leaves the reply in flight (maybe sent)', async () => {
    const connector = made(new EmailConnector(mailbox(), context('email', 'data', leftovers.signal)));
    smtp.dropAfterData(1);
    const { marks, attempt } = recorder();
    await expect(connector.send(outbound('email', 'data', 'data-1', SUPPORT, mailTo('client-data@example.com')), attempt)).rejects.toThrow();
    expect(marks).toEqual(['on']);
  });
});

describe('Slack: taken back only when Slack refused before anything of the reply was posted', () => {
  const connector = () => made(new SlackConnector(
    SlackOptions.parse({ botToken: slack.botToken, appToken: 'xapp-1', apiUrl: slack.apiUrl, perChannelIntervalMs: 0 }),
    context('slack', 'parts', leftovers.signal),
  ));
  const file = { objectKey: 'file-1', name: 'счёт.pdf', mimeType: 'application/pdf', size: 20 };

  it('a 429 on the text, before anything went out, leaves the reply claimed', async () => {
    slack.failNext('chat.postMessage', { status: 429, headers: { 'retry-after': '1' }, body: { ok: false, error: 'ratelimited' } });
    const { marks, attempt } = recorder();
    await expect(connector().send(outbound('slack', 'parts', 'parts-1', 'CPARTS1'), attempt)).rejects.toThrow(/429/);
    expect(marks).toEqual(['on', 'off']);
  });

  it('a 429 on the file after the text was posted leaves the reply in flight; the next attempt is on the wire from its start', async () => {
    slack.failNext('files.completeUploadExternal', { status: 429, headers: { 'retry-after': '1' }, body: { ok: false, error: 'ratelimited' } });
    const c = connector();
    const m = outbound('slack', 'parts', 'parts-2', 'CPARTS2', { attachments: [file] });
    const first = recorder();
    await expect(c.send(m, first.attempt)).rejects.toThrow(/429/);
    expect(first.marks).toEqual(['on', 'on']);
    const second = recorder();
    await c.send(m, { ...second.attempt, attempt: 2 });
    expect(second.marks[0]).toBe('on');
    expect(second.marks).not.toContain('off');
    expect(slack.calls.filter((x) => x.method === 'chat.postMessage' && x.params.channel === 'CPARTS2')).toHaveLength(1);
  });

  it('uploading the bytes posts nothing: a failed upload of a file-only reply never went on the wire', async () => {
    slack.failNext('files.getUploadURLExternal', { status: 500, body: 'stand-in failing' });
    const { marks, attempt } = recorder();
    await expect(connector().send(outbound('slack', 'parts', 'parts-3', 'CPARTS3', { text: '', attachments: [file] }), attempt)).rejects.toThrow();
    expect(marks).toEqual([]);
  });
});
