/**
 * Outside trial T9 through the real path (Dovecot, SMTP stand-in, two accounts): a stranger
 * sends follow-ups into their own ticket, where a victim is a Cc participant, whose Message-IDs
 * are those of future tickets' acknowledgements; the victim's answer to their acknowledgement
 * must stay in the victim's ticket. Run twice over: with the id a stranger could compute from
 * public facts (no longer ours: keyed by the secret), and with the real one (as if the secret
 * had leaked: our sent Message-IDs still win).
 */
import { createHash } from 'node:crypto';
import { simpleParser, type ParsedMail } from 'mailparser';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ImapFlow } from 'imapflow';
import { outboundMessageId } from '../../../src/connectors/email/ids.js';
import { outboundId } from '../../../src/router/commands.js';
import { startGateway, type TestGateway } from '../../helpers/gateway.js';
import { PASSWORD, SUPPORT, connected, inboundOf, mailbox, startWorld, type EmailWorld } from './harness.js';
import { uniqueId } from './mails.js';

const TOKEN = 'helpdesk-token-0123456789';
const SALES = 'sales@shop.ru';
let world: EmailWorld;
let gw: TestGateway;
let salesImap: ImapFlow;
const sha = (s: string) => createHash('sha256').update(s).digest('hex');

function raw(h: Record<string, string>, text: string): Buffer {
  const lines = Object.entries({ Date: new Date().toUTCString(), 'MIME-Version': '1.0', 'Content-Type': 'text/plain; charset=utf-8', 'Content-Transfer-Encoding': '8bit', ...h }).map(([k, v]) => `${k}: ${v}`);
  return Buffer.from(`${lines.join('\r\n')}\r\n\r\n${text}\r\n`, 'utf8');
}

async function send(box: ImapFlow, h: Record<string, string>, text = 'Здравствуйте!'): Promise<{ ticket: string; rule: string; value: string }> {
  const id = h['Message-ID'] ?? uniqueId('t9');
  await box.append('INBOX', raw({ ...h, 'Message-ID': id }, text));
  const e = await gw.waitForEvent((ev) => ev.type === 'ticket.message' && inboundOf(ev)?.email?.messageId?.toLowerCase() === id.toLowerCase(), 30_000);
  const match = (e.entry as { match: { rule: string; value: string } }).match;
  return { ticket: e.ticketId, ...match };
}

async function mailWith(pred: (m: ParsedMail) => boolean): Promise<{ rcpt: string[]; m: ParsedMail }> {
  const deadline = Date.now() + 30_000;
  for (;;) {
    for (const env of world.smtp.received) {
      const m = await simpleParser(env.raw);
      if (pred(m)) return { rcpt: env.to, m };
    }
    if (Date.now() > deadline) throw new Error('no such mail sent');
    await new Promise((r) => setTimeout(r, 100));
  }
}

const firstTo = (m: ParsedMail) => [m.to].flat()[0]?.value[0]?.address;

beforeAll(async () => {
  world = await startWorld([SUPPORT, SALES]);
  salesImap = await world.dovecot.client(SALES, PASSWORD);
  gw = await startGateway({
    api: { tokens: [{ name: 'helpdesk', token: TOKEN }] },
    outbound: { backoffBase: '100ms', backoffMax: '1s' },
    router: { autoAcknowledge: { enabled: true } },
    connectors: [
      { type: 'email', account: 'support', firstRun: 'all', pollIntervalMs: 500, mailboxes: [mailbox(world, SUPPORT)] },
      { type: 'email', account: 'sales', firstRun: 'all', pollIntervalMs: 500, mailboxes: [mailbox(world, SALES)] },
    ],
  }, { nats: world.nats, env: { IMAP_PASS: PASSWORD } });
  await connected(gw);
}, 170_000);

afterAll(async () => {
  await salesImap?.logout().catch(() => {});
  await gw?.stop();
  await world?.stop();
});

describe('pre-booking our Message-IDs (outside trial T9)', () => {
  it('a stranger cannot compute our acknowledgement ids, and one who sends them first claims nothing', async () => {
    const { installationId, messageIdSecret } = gw.gateway.bus;
    const ackOf = (ticket: string) => outboundId(ticket, installationId, 'auto-acknowledgement');
    // What a stranger computes from public facts (the ticket number, the installation id in our mail).
    const predicted = (ticket: string) => `<omni.${ticket}.${sha(`${installationId}\u0000${ackOf(ticket)}`).slice(0, 24)}.${installationId}@shop.ru>`;
    // What a stranger who had the secret would compute: our real id.
    const real = (ticket: string) => outboundMessageId(ticket, ackOf(ticket), 'shop.ru', { installationId, secret: messageIdSecret });

    const own = await send(salesImap, { From: 'attacker@evil.ru', To: SALES, Subject: 'Вопрос' });
    const ack = await mailWith((m) => firstTo(m) === 'attacker@evil.ru');
    expect(ack.m.messageId).toBe(real(own.ticket));
    expect(ack.m.messageId).not.toBe(predicted(own.ticket));

    const trap = await send(world.imap, { From: 'attacker@evil.ru', To: SUPPORT, Cc: 'victim@romashka.ru', Subject: 'Претензия' });
    const next = `T-${Number(trap.ticket.slice(2)) + 1}`;
    for (const id of [predicted(next), real(next)]) {
      const claim = await send(world.imap, { From: 'attacker@evil.ru', To: SUPPORT, Subject: `Re: [#${trap.ticket}] Претензия`, 'Message-ID': id });
      expect(claim.ticket).toBe(trap.ticket);
      expect(claim.value).toContain('has the shape of ours but is none we sent');
    }

    const victim = await send(salesImap, { From: 'victim@romashka.ru', To: SALES, Subject: 'Счёт на оплату' }, 'Пришлите счёт');
    expect(victim.ticket).toBe(next);
    const vack = await mailWith((m) => firstTo(m) === 'victim@romashka.ru');
    expect(vack.m.messageId).toBe(real(next));
    const answer = await send(salesImap, { From: 'victim@romashka.ru', To: SALES, Subject: `Re: ${vack.m.subject}`, 'In-Reply-To': vack.m.messageId!, References: vack.m.messageId! }, 'ИНН 7700000000');
    expect(answer).toMatchObject({ ticket: victim.ticket, rule: 'email-in-reply-to' });

    const reply = await fetch(`${gw.httpUrl}/v1/tickets/${victim.ticket}/replies`, { method: 'POST', headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' }, body: JSON.stringify({ text: 'AGENT-ANSWER счёт готов' }) });
    expect(reply.status).toBe(202);
    const sent = await mailWith((m) => (m.text ?? '').includes('AGENT-ANSWER'));
    expect(sent.rcpt).toEqual(['victim@romashka.ru']);
  }, 120_000);
});
