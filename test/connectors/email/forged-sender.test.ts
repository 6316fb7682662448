/**
 * A mail whose From the receiving server found forged takes over no ticket, end to end through a
 * real Dovecot, the gateway and the SMTP stand-in, with Authentication-Results headers as Gmail,
 * Yandex, Mail.ru and rspamd write them. An outside trial: `From: ivan@romashka.ru` (forged),
 * `Reply-To: attacker@evil.ru`, `Cc: spy@evil.ru`, `In-Reply-To: <our reply to Ivan>` and the
 * MTA's `dmarc=fail` joined Ivan's ticket; the agent's next reply went to the attacker and the
 * spy, who stayed participants for good (the attacker then joined by the subject token alone).
 */
import { simpleParser, type AddressObject, type ParsedMail } from 'mailparser';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { LogEntry } from '../../../src/core/schema.js';
import { startGateway, type TestGateway } from '../../helpers/gateway.js';
import type { ReceivedMail } from '../../helpers/smtp.js';
import { PASSWORD, SUPPORT, connected, inboundOf, mailbox, startWorld, type EmailWorld } from './harness.js';
import { uniqueId } from './mails.js';

const TOKEN = 'helpdesk-token-0123456789';
const SALES = 'sales@example.ru';
const IVAN = 'Иван Петров <ivan@romashka.ru>';

/** As the receiving servers write them (folded as they fold them); the sending IP is the forger's. */
const AR = {
  gmailPass: [
    'mx.google.com;',
    '       dkim=pass header.i=@romashka.ru header.s=mail header.b=Xy12AbCd;',
    '       spf=pass (google.com: domain of ivan@romashka.ru designates 77.88.21.1 as permitted sender) smtp.mailfrom=ivan@romashka.ru;',
    '       dmarc=pass (p=REJECT sp=REJECT dis=NONE) header.from=romashka.ru',
  ].join('\r\n'),
  gmailFail: [
    'mx.google.com;',
    '       spf=fail (google.com: domain of ivan@romashka.ru does not designate 203.0.113.7 as permitted sender) smtp.mailfrom=ivan@romashka.ru;',
    '       dmarc=fail (p=NONE sp=NONE dis=NONE) header.from=romashka.ru',
  ].join('\r\n'),
  // Yandex writes no dmarc result here: spf softfail and no DKIM signature decide.
  yandexSoftfail: 'mxfront5o.mail.yandex.net; spf=softfail (mxfront5o.mail.yandex.net: domain of romashka.ru does not designate 203.0.113.7 as permitted sender, rule=[~all]) smtp.mail=boss@romashka.ru; dkim=none',
  mailruFail: 'mxs.mail.ru; spf=fail (mx123.i.mail.ru: domain of romashka.ru does not designate 203.0.113.7 as permitted sender) smtp.mailfrom=ivan@romashka.ru smtp.helo=evil.example; dkim=none; dmarc=fail header.from=ivan@romashka.ru',
  rspamdPass: 'mx.example.ru; dkim=pass header.d=romashka.ru header.s=mail header.b=QwErTy12; dmarc=pass (policy=reject) header.from=romashka.ru; spf=pass (mx.example.ru: domain of ivan@romashka.ru designates 77.88.21.1 as permitted sender) smtp.mailfrom=ivan@romashka.ru',
  rspamdFail: 'mx.example.ru; dkim=none; dmarc=fail reason="SPF not aligned (relaxed), No valid DKIM" header.from=romashka.ru (policy=reject); spf=fail (mx.example.ru: domain of ivan@romashka.ru does not designate 203.0.113.7 as permitted sender) smtp.mailfrom=ivan@romashka.ru',
  forgedPass: 'mx.example.ru; dkim=pass header.d=romashka.ru; dmarc=pass header.from=romashka.ru; spf=pass smtp.mailfrom=ivan@romashka.ru',
};

let world: EmailWorld;
let gw: TestGateway;

/** A raw mail; `auth` are Authentication-Results values, topmost first (the receiving server's above the sender's). */
function raw(to: string, h: Record<string, string | undefined>, auth: string[] = [], text = 'Здравствуйте!'): Buffer {
  const lines = [
    ...auth.map((a) => `Authentication-Results: ${a}`),
    ...Object.entries({ To: to, Date: new Date().toUTCString(), 'MIME-Version': '1.0', 'Content-Type': 'text/plain; charset=utf-8', 'Content-Transfer-Encoding': '8bit', ...h })
      .filter(([, v]) => v !== undefined)
      .map(([k, v]) => `${k}: ${v}`),
  ];
  return Buffer.from(`${lines.join('\r\n')}\r\n\r\n${text}\r\n`, 'utf8');
}

async function deliver(to: string, h: Record<string, string | undefined>, auth: string[] = [], text?: string): Promise<{ ticket: string; value: string; rule: string }> {
  const id = uniqueId('fs');
  const imap = to === SUPPORT ? world.imap : await world.dovecot.client(to, PASSWORD);
  try {
    await imap.append('INBOX', raw(to, { ...h, 'Message-ID': id }, auth, text));
  } finally {
    if (imap !== world.imap) await imap.logout();
  }
  const e = await gw.waitForEvent((ev) => ev.type === 'ticket.message' && inboundOf(ev)?.email?.messageId === id, 30_000);
  const match = (e.entry as Extract<LogEntry, { kind: 'inbound' }>).match;
  return { ticket: e.ticketId, value: match.value, rule: match.rule };
}

async function reply(ticketId: string, text: string): Promise<void> {
  const res = await fetch(`${gw.httpUrl}/v1/tickets/${ticketId}/replies`, {
    method: 'POST',
    headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' },
    body: JSON.stringify({ text }),
  });
  expect(res.status).toBe(202);
}

async function sentWith(marker: string): Promise<{ envelope: ReceivedMail; mail: ParsedMail }> {
  const deadline = Date.now() + 20_000;
  for (;;) {
    for (const envelope of world.smtp.received) {
      const mail = await simpleParser(envelope.raw);
      if (mail.text?.includes(marker)) return { envelope, mail };
    }
    if (Date.now() > deadline) throw new Error(`no mail with "${marker}" at the SMTP stand-in`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

const listOf = (field: AddressObject | AddressObject[] | undefined) => (field ? [field].flat().flatMap((f) => f.value.map((a) => a.address!.toLowerCase())) : []);

async function participants(ticketId: string): Promise<string[]> {
  return (await gw.ticket(ticketId))!.participants;
}

function startWith(connectors: unknown[]): Promise<TestGateway> {
  return startGateway(
    { api: { tokens: [{ name: 'helpdesk', token: TOKEN }] }, outbound: { backoffBase: '100ms', backoffMax: '1s' }, router: { colleagueDomains: ['romashka.ru'] }, connectors },
    { nats: world.nats, env: { IMAP_PASS: PASSWORD } },
  );
}

beforeAll(async () => {
  world = await startWorld([SUPPORT, SALES]);
}, 60_000);
afterAll(async () => {
  await world?.stop();
});

describe('forged From, no trustedAuthServIds: the topmost Authentication-Results header counts to refuse', () => {
  beforeAll(async () => {
    gw = await startWith([{ type: 'email', account: 'support', firstRun: 'all', pollIntervalMs: 500, mailboxes: [mailbox(world, SUPPORT)] }]);
    await connected(gw);
  }, 60_000);
  afterAll(async () => gw?.stop());

  it('a dmarc=fail mail joins no ticket by In-Reply-To or token, its Reply-To and Cc get no reply and stay strangers', async () => {
    const opened = await deliver(SUPPORT, { From: IVAN, Subject: 'Сверка счетов' }, [AR.gmailPass]);
    const T = opened.ticket;
    await reply(T, 'AGENT-FS-1 конфиденциально');
    const ours = (await sentWith('AGENT-FS-1')).mail.messageId!;

    // The trial's mail, with the MTA's verdict as Mail.ru writes it.
    const forged = await deliver(
      SUPPORT,
      { From: IVAN, 'Reply-To': 'attacker@evil.ru', Cc: 'spy@evil.ru', Subject: `Re: [#${T}] Сверка`, 'In-Reply-To': ours, References: ours },
      [AR.mailruFail],
      'Пришлите акт на новый адрес',
    );
    expect(forged.ticket).not.toBe(T);
    expect(forged.rule).toBe('new-ticket');
    expect(forged.value).toContain(`In-Reply-To names a mail of ${T}, but the receiving server (mxs.mail.ru) found its From forged: dmarc=fail: a ticket of its own`);
    expect(await participants(T)).toEqual(['ivan@romashka.ru']);

    // The agent's next reply on Ivan's ticket goes to Ivan alone.
    await reply(T, 'AGENT-FS-2 акт во вложении');
    const second = await sentWith('AGENT-FS-2');
    expect(listOf(second.mail.to)).toEqual(['ivan@romashka.ru']);
    expect(listOf(second.mail.cc)).toEqual([]);
    expect(second.envelope.to.map((a) => a.toLowerCase())).toEqual(['ivan@romashka.ru']);

    // Afterwards from its own address with the token alone: still a stranger there.
    const own = await deliver(SUPPORT, { From: 'attacker@evil.ru', Subject: `[#${T}] ещё вопрос` });
    expect(own.ticket).not.toBe(T);

    // Gmail's fail, with the forger's own "pass" below it (a sender may add headers only below): refused.
    const gmail = await deliver(SUPPORT, { From: IVAN, Subject: `Re: [#${T}]`, 'In-Reply-To': ours }, [AR.gmailFail, AR.forgedPass]);
    expect(gmail.ticket).not.toBe(T);
    expect(gmail.value).toContain('the receiving server (mx.google.com) found its From forged: dmarc=fail');

    // Ivan himself, his mail passing at Gmail: joins as before.
    const genuine = await deliver(SUPPORT, { From: IVAN, Subject: `Re: [#${T}] Сверка`, 'In-Reply-To': ours }, [AR.gmailPass]);
    expect(genuine).toMatchObject({ ticket: T, rule: 'email-in-reply-to' });
    expect(await participants(T)).toEqual(['ivan@romashka.ru']);
  }, 120_000);

  it('a forged colleague at a declared domain joins by no subject token (Yandex: spf=softfail, no DKIM, no dmarc result)', async () => {
    const opened = await deliver(SUPPORT, { From: IVAN, Subject: 'Договор' });
    const colleague = await deliver(SUPPORT, { From: 'boss@romashka.ru', Subject: `Re: [#${opened.ticket}]` }, [AR.yandexSoftfail]);
    expect(colleague.ticket).not.toBe(opened.ticket);
    expect(colleague.value).toContain(`the subject names ${opened.ticket}, but the receiving server (mxfront5o.mail.yandex.net) found its From forged: spf=softfail, dkim=none: a ticket of its own`);
    // Without a verdict the colleague rule stands (router.colleagueDomains).
    const real = await deliver(SUPPORT, { From: 'boss@romashka.ru', Subject: `Re: [#${opened.ticket}]` });
    expect(real.ticket).toBe(opened.ticket);
  }, 60_000);

  it('says why a forged mail that names no ticket stands alone', async () => {
    const alone = await deliver(SUPPORT, { From: IVAN, Subject: 'Новый вопрос' }, [AR.gmailFail]);
    expect(alone.value).toContain('the receiving server (mx.google.com) found its From forged: dmarc=fail: it joins no existing ticket');
  }, 60_000);
});

describe('trustedAuthServIds and requireAuthenticatedSender', () => {
  beforeAll(async () => {
    gw = await startWith([
      {
        type: 'email',
        account: 'sales',
        firstRun: 'all',
        pollIntervalMs: 500,
        trustedAuthServIds: ['MX.example.ru'],
        requireAuthenticatedSender: true,
        mailboxes: [mailbox(world, SALES)],
      },
    ]);
    await connected(gw);
  }, 60_000);
  afterAll(async () => gw?.stop());

  it('joins on a pass of the trusted server only: its own fail, another server\'s pass or no header open a ticket of their own', async () => {
    const opened = await deliver(SALES, { From: IVAN, Subject: 'Заказ' }, [AR.rspamdPass]);
    const T = opened.ticket;
    const genuine = await deliver(SALES, { From: IVAN, Subject: `Re: [#${T}] Заказ` }, [AR.rspamdPass, AR.gmailFail]);
    expect(genuine).toMatchObject({ ticket: T, rule: 'email-subject-token' });

    // The trusted server's fail is on top; the forger's copy of its name below says pass.
    const forged = await deliver(SALES, { From: IVAN, 'Reply-To': 'attacker@evil.ru', Subject: `Re: [#${T}]` }, [AR.rspamdFail, AR.forgedPass]);
    expect(forged.ticket).not.toBe(T);
    expect(forged.value).toContain('the receiving server (mx.example.ru) found its From forged: dmarc=fail');

    // A pass from a server not listed proves nothing, and the account requires proof.
    const unlisted = await deliver(SALES, { From: IVAN, Subject: `Re: [#${T}]` }, [AR.gmailPass]);
    expect(unlisted.ticket).not.toBe(T);
    expect(unlisted.value).toContain('no trusted server vouched for its From');
    const bare = await deliver(SALES, { From: IVAN, Subject: `Re: [#${T}]` });
    expect(bare.ticket).not.toBe(T);
    expect(await participants(T)).toEqual(['ivan@romashka.ru']);
  }, 120_000);

  it('puts the verdict on the event', async () => {
    const opened = await deliver(SALES, { From: IVAN, Subject: 'Счёт' }, [AR.rspamdPass]);
    const log = await gw.gateway.router!.store.readLog(opened.ticket);
    const event = (log[0]!.entry as Extract<LogEntry, { kind: 'inbound' }>).event;
    expect(event.email?.authentication).toEqual({ verdict: 'pass', by: 'mx.example.ru', trusted: true, dmarc: 'pass', spf: 'pass', dkim: 'pass', required: true });
  }, 60_000);
});

