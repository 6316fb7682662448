/**
 * omnigate → Zammad: tickets, customer articles, internal notes, state changes. Everything is
 * written by the integration user (the token's owner); customer messages carry `origin_by_id` =
 * the customer, so Zammad shows them as the customer's (sender Customer) and our Agent-only
 * trigger never fires for them. Articles use `options.articleType` (web/chat/note): types Zammad
 * never sends out itself.
 */
import { createHash } from 'node:crypto';
import type { LogEntry, TicketEvent } from '../../core/schema.js';
import { errorMessage } from '../../core/errors.js';
import {
  HelpdeskRefusedError,
  HelpdeskUnavailableError,
  firstMessageOf,
  type ApplyContext,
  type ApplyOutcome,
  type ExternalTicket,
  type HelpdeskAdapter,
  type HelpdeskContext,
  type HelpdeskHealth,
} from '../contract.js';
import { ZammadClient, type NewAttachment, type ZammadTicket, type ZammadUser } from './client.js';
import type { ZammadOptions } from './index.js';
import { ZammadIntake, htmlToText } from './intake.js';
import { cutToChars, headlineOf } from '../headline.js';

type Inbound = Extract<LogEntry, { kind: 'inbound' }>['event'];

export class ZammadAdapter implements HelpdeskAdapter {
  readonly client: ZammadClient;
  private self?: ZammadUser;
  private readonly customers = new Map<string, number>();
  private health_: HelpdeskHealth = { state: 'starting', since: new Date().toISOString() };
  private readonly intake: ZammadIntake;

  constructor(
    readonly o: ZammadOptions,
    readonly ctx: HelpdeskContext,
  ) {
    this.client = new ZammadClient(o.url, o.token, o.timeout, ctx.signal);
    this.intake = new ZammadIntake(this, ctx);
    this.intake.mount();
  }

  /** The integration user: whatever it wrote is ours, never an agent's answer. */
  async me(): Promise<ZammadUser> {
    this.self ??= await this.client.me();
    return this.self;
  }

  /** One polling pass now (tests, and operators through a replay). */
  poll(): Promise<number> {
    return this.intake.pollOnce();
  }

  async start(): Promise<void> {
    try {
      const me = await this.me();
      this.setHealth('connected', `as ${me.login}`);
    } catch (err) {
      this.setHealth(err instanceof HelpdeskUnavailableError && err.authFailed ? 'auth_failed' : 'disconnected', errorMessage(err));
    }
    this.intake.startPolling();
  }

  async stop(): Promise<void> {
    await this.intake.stopPolling();
  }

  health(): HelpdeskHealth {
    return this.health_;
  }

  setHealth(state: HelpdeskHealth['state'], detail?: string): void {
    this.health_ = { state, detail, since: new Date().toISOString() };
    this.ctx.setHealth(state, detail);
  }

  /**
   * What the ticket field holds: the omnigate ticket id and this installation's (`T-1042@3f9a…`).
   * A ticket id alone is not unique across installations: a reinstall on fresh NATS data, or a
   * staging gateway on the same Zammad, numbers its tickets from T-1001 again, and took the first
   * installation's Zammad tickets for its own (their old answers went to its customers).
   */
  fieldValue(ticketId: string): string {
    return `${ticketId}@${this.ctx.installationId}`;
  }

  /** The omnigate ticket id a field value names, when it is this installation's; undefined otherwise. */
  ticketIdOf(value: unknown): string | undefined {
    const suffix = `@${this.ctx.installationId}`;
    return typeof value === 'string' && value.endsWith(suffix) && value.length > suffix.length ? value.slice(0, -suffix.length) : undefined;
  }

  async ensureTicket(event: TicketEvent): Promise<ExternalTicket> {
    const field = this.o.ticketField;
    const ours = this.fieldValue(event.ticketId);
    // An earlier attempt may have created it and died before the mapping was recorded. The search
    // may match loosely (Elasticsearch): only a ticket whose field is exactly ours is.
    const found: ZammadTicket[] = [];
    for (const id of await this.client.searchTickets(field, ours)) {
      const t = await this.client.ticket(id);
      if (t[field] === ours) found.push(t);
    }
    if (found.length > 0) {
      const t = found.reduce((a, b) => (a.id <= b.id ? a : b));
      this.ctx.log.info({ ticketId: event.ticketId, zammadTicket: t.id }, 'Zammad ticket already exists for this omnigate ticket (an earlier attempt made it): not creating another');
      // What it holds now was there before the link: not answers to send again.
      await this.intake.watchExisting(t);
      return this.external(t.id);
    }
    // The first message only when this event announces it; for a ticket opened from a later event
    // (its first messages parked, or older than the helpdesk), a short first article: the event
    // itself is then written by apply, and the parked first messages when they are replayed.
    const first = firstMessageOf(event);
    const body = first ? articleBody(first, this.ctx.texts.noText) : { body: this.ctx.texts.earlierMessagesFollow(event.ticketId, event.channel), content_type: 'text/plain' };
    const created = await this.client.createTicket({
      title: titleOf(event, first),
      group: this.groupFor(event.channel, event.account),
      customer: this.customerOf(event),
      [field]: ours,
      article: {
        subject: titleOf(event, first),
        ...body,
        type: this.o.articleType,
        internal: false,
        sender: first ? 'Customer' : 'System',
        attachments: first ? await this.attachmentsOf(first.attachments) : [],
      },
    });
    if (created[field] !== ours) {
      // Zammad drops attributes it does not know: without the field, a crash before the mapping
      // is recorded would make a second ticket. Said loudly, once per ticket, not refused.
      this.ctx.log.error({ ticketId: event.ticketId, zammadTicket: created.id, field }, `Zammad did not keep the ticket field "${field}": create it (Admin → Objects → Ticket, then Update database), or tickets may be duplicated after a crash`);
    }
    this.customers.set(String(created.id), created.customer_id);
    await this.intake.watch(String(created.id));
    this.ctx.log.info({ ticketId: event.ticketId, zammadTicket: created.id, number: created.number }, 'Zammad ticket created');
    return this.external(created.id);
  }

  private external(id: number): ExternalTicket {
    return { externalId: String(id), url: `${this.o.url}/#ticket/zoom/${id}` };
  }

  async tellAgents(externalId: string, text: string): Promise<void> {
    await this.note(externalId, text, false);
  }

  async erase(ticket: ExternalTicket, ticketId: string): Promise<void> {
    const outcome = await this.client.deleteTicket(ticket.externalId);
    await this.intake.unwatch(ticket.externalId);
    // Its last seen state (`state.<id>`) goes too: it belonged to the erased ticket.
    await this.intake.forgetState(ticket.externalId);
    this.ctx.log.info({ ticketId, zammadTicket: ticket.externalId, outcome }, 'Zammad ticket deleted: its omnigate ticket was erased');
  }

  async apply(event: TicketEvent, { ticket, uncertain }: ApplyContext): Promise<ApplyOutcome> {
    const entry = event.entry;
    const id = ticket.externalId;
    switch (event.type) {
      case 'ticket.message': {
        if (entry?.kind !== 'inbound') return 'ignored';
        const { body, content_type } = articleBody(entry.event, this.ctx.texts.noText);
        if (uncertain && (await this.alreadyThere(id, body))) return 'applied';
        await this.client.createArticle({
          ticket_id: Number(id),
          body,
          content_type,
          type: this.o.articleType,
          internal: false,
          origin_by_id: await this.customerId(id),
          attachments: await this.attachmentsOf(entry.event.attachments),
        });
        return 'applied';
      }
      case 'ticket.reply': {
        // A reply sent from outside Zammad (the REST API, an automatic acknowledgement): shown
        // to agents as a public agent article Zammad does not deliver (we did).
        if (entry?.kind !== 'outbound') return 'ignored';
        const m = entry.message;
        const who = m.automated ? this.ctx.texts.automatic(m.purpose) : (m.author.name ?? m.author.id);
        const body = `${m.text}\n\n${this.ctx.texts.sentBy(who)}`;
        if (uncertain && (await this.alreadyThere(id, body))) return 'applied';
        await this.client.createArticle({ ticket_id: Number(id), body, content_type: 'text/plain', type: this.o.articleType, internal: false, sender: 'Agent' });
        return 'applied';
      }
      case 'ticket.note': {
        if (entry?.kind !== 'note') return 'ignored';
        return this.note(id, `${entry.text}\n\n${this.ctx.texts.noteBy(entry.author.name ?? entry.author.id)}`, uncertain);
      }
      case 'ticket.delivery_failed': {
        const reason = entry?.kind === 'delivery' ? (entry.status.reason ?? 'unknown reason') : (event.lastDelivery?.reason ?? 'unknown reason');
        return this.note(id, this.ctx.texts.deliveryFailed(event.channel, reason), uncertain);
      }
      case 'ticket.edited':
        return entry?.kind === 'edited' ? this.note(id, this.ctx.texts.edited(event.channel, entry.event.text), uncertain) : 'ignored';
      case 'ticket.deleted':
        return this.note(id, this.ctx.texts.deleted(event.channel), uncertain);
      case 'ticket.status': {
        if (entry?.kind !== 'status') return 'ignored';
        const state = this.o.statusToZammad[entry.to];
        if (!state) return 'ignored';
        await this.client.updateTicket(id, { state });
        await this.intake.rememberState(id, state);
        return 'applied';
      }
      default:
        return 'ignored';
    }
  }

  private async note(id: string, body: string, uncertain: boolean): Promise<ApplyOutcome> {
    if (uncertain && (await this.alreadyThere(id, body))) return 'applied';
    await this.client.createArticle({ ticket_id: Number(id), body, content_type: 'text/plain', type: 'note', internal: true });
    return 'applied';
  }

  /** After an attempt that may have landed: is an article of ours with this body there already? */
  private async alreadyThere(id: string, body: string): Promise<boolean> {
    const me = await this.me();
    const articles = await this.client.articles(id);
    // Zammad sanitizes HTML articles: compared as text, or an HTML message retried after a crash was written twice.
    const text = htmlToText(body);
    const found = articles.some((a) => a.created_by_id === me.id && (a.body === body || htmlToText(a.body) === text));
    if (found) this.ctx.log.info({ zammadTicket: id }, 'the earlier attempt had reached Zammad: not writing the article again');
    return found;
  }

  private async customerId(id: string): Promise<number> {
    const known = this.customers.get(id);
    if (known) return known;
    const t = await this.client.ticket(id);
    this.customers.set(id, t.customer_id);
    if (this.customers.size > 10_000) this.customers.delete(this.customers.keys().next().value!);
    return t.customer_id;
  }

  private groupFor(channel: string, account: string): string {
    const rule = this.o.groups.find((r) => (!r.channel || r.channel === channel) && (!r.account || r.account === account));
    return rule?.group ?? this.o.group;
  }

  /**
   * The customer as a user object: Zammad finds it by email, then login, and creates it if none
   * matches. Phone-only and chat customers get a login made from the number or the chat id (the
   * SQL search without Elasticsearch matches logins, not phone numbers).
   */
  private customerOf(event: TicketEvent): Record<string, unknown> {
    const contact = event.contact ?? { id: event.conversation?.id ?? event.ticketId, handles: {} };
    const handles = contact.handles ?? {};
    const [firstname, ...rest] = (contact.displayName ?? '').split(/\s+/).filter(Boolean);
    const names = { firstname: firstname ?? contact.id, lastname: rest.join(' ') || undefined };
    // Zammad joins tickets to an existing user by email (then login): only an address or number
    // the platform proved may do that. A web form's claimed email must not open a ticket in
    // someone else's name (a stranger typing a customer's address saw it under theirs).
    const email = PROVEN_EMAIL.has(event.channel) ? handles.email : undefined;
    if (email) return { email, login: email.toLowerCase(), ...names };
    const phone = PROVEN_PHONE.has(event.channel) ? handles.phone : undefined;
    if (phone) return { login: `phone-${phone.replace(/[^\d]/g, '')}`, mobile: phone, ...names };
    return { login: loginFor(event.channel, event.account, contact.id), ...(handles.email ? { note: `email (not verified): ${handles.email}` } : {}), ...names };
  }

  private async attachmentsOf(list: Inbound['attachments']): Promise<NewAttachment[]> {
    const out: NewAttachment[] = [];
    for (const a of list) {
      if (a.status !== 'stored' || !a.objectKey) continue;
      const bytes = await this.ctx.media.get(a.objectKey);
      if (!bytes) throw new HelpdeskRefusedError('media_missing', `attachment ${a.name} (${a.objectKey}) is no longer in the object store`);
      out.push({ filename: a.name, data: Buffer.from(bytes).toString('base64'), 'mime-type': a.mimeType });
    }
    return out;
  }
}

/** Channels whose sender address or number the platform proved (the contacts model's rule). */
const PROVEN_EMAIL = new Set(['email', 'slack']);
const PROVEN_PHONE = new Set(['whatsapp']); // WhatsApp Web and Cloud both publish as `whatsapp`

/**
 * A login for a chat customer: Zammad logins are ASCII. An id that is not (a Cyrillic web-form
 * id) keeps its readable part and gains a hash of the whole: «иван» and «петр» were both
 * "webhook-site-____", one Zammad user for two customers.
 */
export function loginFor(channel: string, account: string, id: string): string {
  const raw = `${channel}-${account}-${id}`.toLowerCase();
  const login = raw.replace(/[^a-z0-9@._-]/g, '_');
  return login === raw ? login : `${login}-${createHash('sha256').update(`${channel}\n${account}\n${id}`).digest('hex').slice(0, 12)}`;
}

function bodyOf(e: Inbound): string {
  const failed = e.attachments.filter((a) => a.status === 'failed').map((a) => `[attachment ${a.name} could not be fetched: ${a.error ?? 'unknown'}]`);
  const parts = e.parts.map((p) => (p.type === 'location' ? `[location ${p.latitude}, ${p.longitude}${p.title ? ` ${p.title}` : ''}]` : p.type === 'contact' ? `[contact ${p.name}${p.phone ? ` ${p.phone}` : ''}]` : `[reaction ${p.emoji}]`));
  return [e.text, ...parts, ...failed].filter(Boolean).join('\n');
}

/**
 * A customer message as a Zammad article: its text, or its HTML when it has no text (a form or
 * mail sent as HTML only reached the agent as "(no text)"). Zammad sanitizes HTML articles itself.
 */
function articleBody(e: Inbound, noText: string): { body: string; content_type: 'text/plain' | 'text/html' } {
  const text = bodyOf(e);
  if (text || !e.html) return { body: text || noText, content_type: 'text/plain' };
  return { body: e.html, content_type: 'text/html' };
}

function titleOf(event: TicketEvent, first?: Inbound): string {
  return `${cutToChars(headlineOf(first), 80) || `${event.channel} conversation`} [${event.ticketId}]`;
}
