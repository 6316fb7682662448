import { z } from 'zod';
import { readCapped, redirectRefusal, retryAfterMs, type RawRequest, type RawResponse } from '../../core/http.js';
import { describeFetchFailure } from '../../core/network-failure.js';
import { Pacer } from '../../core/pacer.js';
import { PermanentDeliveryError, TransientDeliveryError, errorMessage } from '../../core/errors.js';
import { MediaTooLargeError } from '../../core/media.js';
import { MimeType, PrintableId, PrintableText, UNREAL_OFFSET, VisibleId, describeZodError, realOffset, type Attachment, type InboundEventInput, type OutboundMessage } from '../../core/schema.js';
import { JsonInputError, decodeBase64Strict, jsonMediaType, parseJsonBody } from '../../core/json-input.js';
import { SIGNATURE_HEADER, safeEqual, sign, verify } from '../../core/signature.js';
import { describeUnknownKey, unknownKeys } from '../../core/strict-keys.js';
import { HealthTracker, InvalidEventError, eventId, type Connector, type ConnectorContext, type PublishResult, type SendAttempt, type SendResult } from '../contract.js';
import type { WebhookOptions } from './index.js';
import { UNVERIFIED_PREFIX, keyOfId, unverifiedId } from './sender-ids.js';

/** How long a POST waits for NATS to store its event before it is answered 503 (retry). */
const INTAKE_WAIT_MS = 20_000;

// Ids become the event id (Nats-Msg-Id header), thread keys and platform references: checked here so
// a bad one is a 400 naming the field, not a publish that can never succeed.
const Id = PrintableId(200);
/** Each attachment is an object-store write before the answer: a bounded number keeps the answer prompt. */
const MAX_ATTACHMENTS = 20;

/** How much of a callback's answer is read: its `id`, or the start of its refusal for the log. */
const CALLBACK_ANSWER_MAX_BYTES = 64 * 1024;

const Base64 = z.string().min(1).refine((s) => decodeBase64Strict(s) !== null, 'is not valid base64');


/**
 * One-line fields (a name, an address, a subject): no control characters, and no Unicode line or
 * paragraph separator (U+2028, U+2029) or C1 control either. A CR LF in one would reach a mail
 * header or a helpdesk's one-line field as a second line; the separators break lines in browsers
 * and editors the same way.
 */
const OneLine = (max: number) => PrintableText(max, 0).regex(/^[^\u0080-\u009f\u2028\u2029]*$/, 'must be one line (no U+2028/U+2029 line separators or C1 control characters)');

const Sender = z.object({
  id: Id,
  name: OneLine(200).optional(),
  // Handles a contact is matched by: ids, so refused with an invisible character (the name is cleaned of it instead).
  email: VisibleId(OneLine(320)).optional(),
  phone: VisibleId(OneLine(64)).optional(),
  /**
   * false: the site did not authenticate this sender (an open form), whatever `senderIds` says; true:
   * it did. Absent: as the account's `senderIds` says.
   */
  verified: z.boolean().optional(),
});

/** What a web form or external system POSTs to /connectors/webhook/<account>/messages. */
export const WebhookInbound = z.discriminatedUnion('type', [
  z.object({
    type: z.literal('message').default('message'),
    messageId: Id,
    conversationId: Id.optional(),
    sender: Sender,
    subject: OneLine(1000).optional(),
    text: z.string().default(''),
    html: z.string().optional(),
    replyTo: Id.optional(),
    // The sender's clock may be off, not by a day: such a time is a bug in the form, and it would
    // order the conversation wrongly for good.
    // NaN (not a time at all) is the datetime check's to report, not "in the future".
    sentAt: z.string().datetime({ offset: true })
      .refine((v) => !(Date.parse(v) >= Date.now() + 86_400_000), 'is more than a day in the future')
      .refine((v) => !(Date.parse(v) < Date.UTC(1900, 0, 1)), 'a year from 1900 on')
      .refine(realOffset, UNREAL_OFFSET)
      .optional(),
    attachments: z
      .array(z.object({ name: PrintableText(255, 1), mimeType: MimeType.default('application/octet-stream'), contentBase64: Base64 }))
      .max(MAX_ATTACHMENTS)
      .default([]),
  }).refine((m) => m.text.trim() !== '' || (m.html ?? '').trim() !== '' || m.attachments.length > 0, {
    // An empty message would open a ticket nobody can answer for anything.
    path: ['text'],
    message: 'a message needs text, html or attachments',
  }),
  z.object({
    type: z.literal('edit'),
    messageId: Id,
    targetMessageId: Id,
    conversationId: Id.optional(),
    sender: Sender,
    text: z.string(),
  }),
  z.object({
    type: z.literal('delete'),
    messageId: Id,
    targetMessageId: Id,
    conversationId: Id.optional(),
    sender: Sender,
  }),
]);

type WebhookInbound = z.infer<typeof WebhookInbound>;

export class WebhookConnector implements Connector {
  /** The receiver deduplicates by the Idempotency-Key header (docs/connectors): a resend is harmless. */
  readonly resendSafe = true;
  private readonly health_: HealthTracker;
  private readonly pacer: Pacer;

  constructor(
    private readonly options: WebhookOptions,
    private readonly ctx: ConnectorContext,
  ) {
    this.health_ = new HealthTracker(ctx);
    this.pacer = new Pacer(options.perConversationIntervalMs, 0);
  }

  async start(): Promise<void> {
    // Flat refusals from the server too (413, unknown account): the shape form integrations switch on (README).
    // Its secret is throttled with the API's tokens (api.authThrottle): a guesser is refused 429.
    this.ctx.http.route('POST', `/connectors/webhook/${this.ctx.account}/messages`, (req) => this.receive(req), { errors: 'flat', ownCredential: 'secrets or signatures' });
    this.health_.set('connected');
  }

  async stop(): Promise<void> {
    this.health_.set('stopped');
  }

  health() {
    return this.health_.get();
  }

  private authorized(req: RawRequest): boolean {
    const bearer = req.headers.authorization?.replace(/^Bearer\s+/i, '');
    if (bearer && safeEqual(bearer, this.options.secret)) return true;
    return verify(this.options.secret, req.rawBody, req.headers[SIGNATURE_HEADER]).ok;
  }

  /** The sender waits for our answer: during a NATS outage it is told 503 (and retries) after INTAKE_WAIT_MS. */
  private publish(input: InboundEventInput): Promise<PublishResult> {
    return this.ctx.publish(input, { giveUpAfterMs: INTAKE_WAIT_MS });
  }

  private async receive(req: RawRequest): Promise<RawResponse> {
    if (!this.authorized(req)) {
      // Only a credential presented counts as a guess; a bare request (a probe, a browser) does not.
      const presented = !!req.headers.authorization?.trim() || !!req.headers[SIGNATURE_HEADER];
      return { status: 401, body: { error: 'unauthorized', message: 'missing or invalid bearer token or signature' }, credentialRefused: presented };
    }
    const encoding = contentEncodingRefusal(req.headers['content-encoding']);
    if (encoding) {
      await this.ctx.deadLetter(`webhook body refused: ${encoding}`, req.rawBody);
      return { status: 415, body: { error: 'unsupported_encoding', message: encoding, field: 'Content-Encoding' } };
    }
    // The charset Content-Type names is the one the body is read in (windows-1251 from 1C).
    const { refusal, charset } = jsonMediaType(req.headers['content-type']);
    if (refusal) {
      await this.ctx.deadLetter(`webhook body refused: ${refusal}`, req.rawBody);
      return { status: 415, body: { error: 'unsupported_media_type', message: refusal, field: 'Content-Type' } };
    }
    let json: unknown;
    try {
      json = parseJsonBody(req.rawBody, charset);
    } catch (err) {
      const refused = err instanceof JsonInputError ? err : new JsonInputError('body is not valid JSON');
      await this.ctx.deadLetter(`webhook body ${refused.kind === 'json' ? 'refused' : 'invalid'}: ${refused.message}`, req.rawBody);
      return { status: 400, body: { error: refused.kind === 'json' ? 'invalid_json' : 'invalid_body', message: refused.message, field: refused.field } };
    }
    if (json && typeof json === 'object' && !('type' in json)) (json as Record<string, unknown>).type = 'message';
    const parsed = WebhookInbound.safeParse(json);
    if (!parsed.success) {
      const message = describeZodError(parsed.error);
      await this.ctx.deadLetter(`webhook body invalid: ${message}`, req.rawBody);
      const field = parsed.error.issues[0]?.path.map(String).join('.') || 'body';
      return { status: 400, body: { error: 'invalid_body', message, field } };
    }
    // A misspelt field (`prioirty`, `sender.phnoe`) would be dropped by the parse without a word.
    const [unknown] = unknownKeys(WebhookInbound, json, [], 1);
    if (unknown) {
      const field = unknown.path.join('.');
      const message = `${field}: ${describeUnknownKey(unknown)}`;
      await this.ctx.deadLetter(`webhook body invalid: ${message}`, req.rawBody);
      return { status: 400, body: { error: 'invalid_body', message, field } };
    }
    const m = parsed.data;
    const { channel, account } = this.ctx;
    const keys = this.keysOf(m);
    if ('field' in keys) {
      await this.ctx.deadLetter(`webhook body invalid: ${keys.message}`, req.rawBody);
      return { status: 400, body: { error: 'invalid_body', message: keys.message, field: keys.field } };
    }
    const sender = {
      id: keys.sender,
      displayName: m.sender.name,
      handles: Object.fromEntries(Object.entries({ email: m.sender.email, phone: m.sender.phone, claimedId: keys.claimedId }).filter(([, v]) => v)) as Record<string, string>,
    };
    const conversation = { id: keys.conversation, ...(keys.writtenId ? { writtenId: keys.writtenId } : {}), kind: 'private' as const };
    const id = eventId(channel, account, m.type === 'message' ? m.messageId : `${m.type}:${m.messageId}`);
    try {
      let result;
      if (m.type === 'message') {
        const attachments: Attachment[] = [];
        for (const a of m.attachments) {
          const bytes = decodeBase64Strict(a.contentBase64)!; // checked by the schema
          try {
            attachments.push(await this.ctx.media.put(bytes, { name: a.name, mimeType: a.mimeType }));
          } catch (err) {
            if (!(err instanceof MediaTooLargeError)) throw err;
            attachments.push(this.ctx.media.failed({ name: a.name, mimeType: a.mimeType, size: bytes.byteLength }, err.message));
          }
        }
        result = await this.publish({
          type: 'message.inbound',
          id,
          conversation: { ...conversation, title: m.subject },
          subject: m.subject,
          sender,
          text: m.text,
          html: m.html,
          format: m.html ? 'html' : 'plain',
          attachments,
          replyTo: m.replyTo,
          platform: { messageId: m.messageId, sentAt: m.sentAt },
        });
      } else if (m.type === 'edit') {
        result = await this.publish({
          type: 'message.edited', id, conversation, sender, targetPlatformMessageId: m.targetMessageId, text: m.text,
          platform: { messageId: m.messageId },
        });
      } else {
        result = await this.publish({
          type: 'message.deleted', id, conversation, sender, targetPlatformMessageId: m.targetMessageId,
          platform: { messageId: m.messageId },
        });
      }
      return { status: 202, body: { eventId: id, duplicate: result.duplicate } };
    } catch (err) {
      if (err instanceof InvalidEventError) {
        await this.ctx.deadLetter(err.message, req.rawBody);
        return { status: 400, body: { error: 'invalid_event', message: err.message, ...(err.field ? { field: err.field } : {}) } };
      }
      // Not stored: tell the sender to retry rather than pretend we have it.
      return { status: 503, body: { error: 'unavailable', message: errorMessage(err) } };
    }
  }

  /**
   * The sender and conversation keys of a post. An authenticated sender's ids are the keys, in
   * their normal form (keyOfId), the form as written kept where it differs so a conversation
   * opened under it before is still found. An unverified sender's are its message's own: nobody
   * who types a customer's address joins, edits or deletes in that customer's conversation.
   */
  private keysOf(m: WebhookInbound): { sender: string; conversation: string; writtenId?: string; claimedId?: string } | { field: string; message: string } {
    const verified = m.sender.verified ?? this.options.senderIds === 'authenticated';
    if (m.sender.verified === true && this.options.senderIds === 'unverified') {
      return { field: 'sender.verified', message: 'sender.verified: this account takes unverified senders only (senderIds: unverified); configure senderIds: authenticated to let the site vouch for a sender' };
    }
    if (!verified) {
      if (m.type !== 'message') return { field: 'sender.verified', message: `sender.verified: an unverified sender cannot ${m.type} a message: nothing shows it wrote it` };
      if (m.conversationId !== undefined) return { field: 'conversationId', message: 'conversationId: an unverified sender\'s message opens a conversation of its own; send an id the site authenticated, with sender.verified true, to continue one' };
      const id = unverifiedId(m.messageId);
      return { sender: id, conversation: id, claimedId: m.sender.id };
    }
    for (const [field, value] of [['sender.id', m.sender.id], ['conversationId', m.conversationId]] as const) {
      if (value === undefined) continue;
      if (value.trim() === '') return { field, message: `${field}: is only whitespace` };
      if (keyOfId(value).startsWith(UNVERIFIED_PREFIX)) return { field, message: `${field}: "${UNVERIFIED_PREFIX}" is reserved for the ids the gateway gives unverified senders` };
    }
    const written = m.conversationId ?? m.sender.id;
    const conversation = keyOfId(written);
    return { sender: keyOfId(m.sender.id), conversation, ...(written !== conversation ? { writtenId: written } : {}) };
  }

  async send(message: OutboundMessage, attempt?: SendAttempt): Promise<SendResult> {
    if (!this.options.callbackUrl) throw new PermanentDeliveryError('no callbackUrl configured for this webhook account', 'no_callback');
    await this.pacer.wait(message.conversation.id, undefined, this.ctx.signal);
    const body = JSON.stringify(message);
    let res: Response;
    try {
      res = await fetch(this.options.callbackUrl, {
        method: 'POST',
        headers: {
          'content-type': 'application/json', [SIGNATURE_HEADER]: sign(this.options.secret, body), 'idempotency-key': message.id,
          // A repeat (after a gateway died mid-send) has the same key and a higher attempt.
          ...(attempt ? { 'x-omnigate-attempt': String(attempt.attempt) } : {}),
          ...(attempt?.replica ? { 'x-omnigate-replica': attempt.replica } : {}),
        },
        body,
        signal: AbortSignal.timeout(this.options.timeoutMs),
        redirect: 'manual',
      });
    } catch (err) {
      throw new TransientDeliveryError(`callback unreachable: ${describeFetchFailure(err, this.options.callbackUrl, this.options.timeoutMs)}`);
    }
    // A redirect will not fix itself: failed for good at once (the agent sees it), replayable once callbackUrl is mended.
    const redirected = redirectRefusal(res);
    if (redirected) {
      await res.body?.cancel().catch(() => {});
      throw new PermanentDeliveryError(`callbackUrl ${redirected}`, `http_${res.status}`);
    }
    // Only an id is read from the answer; the rest of a large one is not held.
    const text = await readCapped(res, CALLBACK_ANSWER_MAX_BYTES).catch(() => '');
    if (res.status === 429) {
      throw new TransientDeliveryError('callback rate limited (429)', retryAfterMs(res.headers.get('retry-after')));
    }
    // A 503's Retry-After (maintenance) is honoured too, within outbound.backoffMax as any wait.
    if (res.status >= 500) throw new TransientDeliveryError(`callback answered ${res.status}`, res.status === 503 ? retryAfterMs(res.headers.get('retry-after')) : undefined);
    if (res.status >= 400) throw new PermanentDeliveryError(`callback refused with ${res.status}: ${text.slice(0, 200)}`, `http_${res.status}`);
    let platformMessageId = message.id;
    try {
      const parsed = JSON.parse(text) as { id?: unknown };
      if (typeof parsed.id === 'string' && parsed.id) platformMessageId = parsed.id;
    } catch {
      /* the id is optional */
    }
    return { platformMessageId };
  }
}

/**
 * Why a request body in a Content-Encoding other than identity is refused, or undefined when it is
 * not. The body is read as it came: gzip bytes were refused as "not valid UTF-8", which sent the
 * sender looking at its charset instead of its compression.
 */
export function contentEncodingRefusal(header: string | undefined): string | undefined {
  const codings = (header ?? '').split(',').map((c) => c.trim().toLowerCase()).filter(Boolean);
  const other = codings.filter((c) => c !== 'identity');
  if (!other.length) return undefined;
  const given = other.join(', ').slice(0, 60).replace(/[^\x20-\x7e]/g, '?');
  return `Content-Encoding: ${given} is not accepted: send the body uncompressed (no Content-Encoding, or identity)`;
}
