/**
 * What a WhatsApp Cloud dead letter holds, read for `omnigate dlq --replay`, and what a replay of
 * it came to. Intake walks a webhook body item by item (webhook-body.ts) and parks only the part
 * that failed: the whole body (not JSON, not a `whatsapp_business_account` object), one entry, one
 * change, one message, one status, one contact, or the value of a list field that was not a list.
 * Letters of this version say which in `meta.kind`, with the phone number id of the account that
 * parked them (`meta.phoneNumberId`), and for a message its sender's profile name and when it
 * arrived (`meta.profileName`, `meta.receivedAt`); letters of older versions carry no meta and
 * are told apart by their shape.
 *
 * A replay takes only what was parked back through intake: a message through the message path, a
 * change or entry through the walk of its messages, a whole body through the whole walk. Not
 * replayed (refused): a body that is not JSON (Meta signed those bytes: they will not read better),
 * a delivery status (only customers' messages are replayed), a contact (it only names the sender
 * of its change's messages, which were taken without it), the value of a list field that was not
 * a list (without the change around it nothing tells what it is), and a letter of another phone
 * number id than the account's now.
 */
import { parseJsonBounded } from '../../core/json-input.js';
import { errorMessage } from '../../core/errors.js';
import type { ReplayOutcome } from '../contract.js';
import { CloudStatus, describeAt, type CloudContact } from './payload.js';
import type { LetterKind } from './webhook-body.js';

export type CloudLetter =
  | { ok: true; kind: 'body'; raw: Buffer }
  | { ok: true; kind: 'entry' | 'change'; item: unknown }
  | { ok: true; kind: 'message'; item: unknown; contacts: CloudContact[]; receivedAtMs?: number }
  | { ok: false; reason: string };

const REFUSED: Partial<Record<LetterKind, string>> = {
  status: 'a delivery status is not replayed, only customers\' messages are (the letter keeps the status for reading)',
  contact: 'a contact only gives the profile name of its change\'s messages, which were taken without it: nothing to replay',
  list: 'the letter holds the value of a list field of a change (messages, statuses or contacts) that was not a list: without the change around it a replay cannot tell what it is',
};

export function readLetter(payload: Buffer, meta: Record<string, string>, phoneNumberId: string, account: string): CloudLetter {
  if (meta.phoneNumberId && meta.phoneNumberId !== phoneNumberId) {
    return { ok: false, reason: `the letter's \`meta.phoneNumberId\` ${meta.phoneNumberId} is not the phone number id of whatsapp-cloud account ${account} now (${phoneNumberId})` };
  }
  let json: unknown;
  try {
    json = parseJsonBounded(payload.toString('utf8'));
  } catch (err) {
    return { ok: false, reason: `the letter holds no Meta webhook: the body Meta sent was not JSON (${errorMessage(err)}), and a replay would not read it better` };
  }
  const fromMeta = isKind(meta.kind);
  const kind = isKind(meta.kind) ? meta.kind : kindOf(json);
  if (!kind) return { ok: false, reason: `cannot tell what the letter holds: ${meta.kind ? `\`meta.kind\` ${meta.kind} is none we park, and` : 'no `meta.kind`, and'} its shape is not a webhook body, entry, change, message, status or contact` };
  const refused = REFUSED[kind];
  if (refused) return { ok: false, reason: `${fromMeta ? `\`meta.kind\` ${kind}` : `no \`meta.kind\`, by its shape a ${kind}`}: ${refused}${kind === 'status' ? unreadableStatus(json) : ''}` };
  if (kind === 'body') return { ok: true, kind, raw: payload };
  if (kind === 'entry' || kind === 'change') return { ok: true, kind, item: json };
  const from = typeof (json as { from?: unknown })?.from === 'string' ? (json as { from: string }).from : undefined;
  const contacts = meta.profileName && from ? [{ wa_id: from, profile: { name: meta.profileName } }] : [];
  const at = Date.parse(meta.receivedAt ?? '');
  return { ok: true, kind: 'message', item: json, contacts, ...(Number.isFinite(at) ? { receivedAtMs: at } : {}) };
}

/** The field that kept a parked status from being read, so the refusal names it as intake did. */
function unreadableStatus(json: unknown): string {
  const status = CloudStatus.safeParse(json);
  return status.success ? '' : `; nor could it be read: ${describeAt(status.error, 'status')}`;
}

const KINDS: ReadonlySet<string> = new Set<LetterKind>(['body', 'entry', 'change', 'list', 'contact', 'message', 'status']);
const isKind = (k: string | undefined): k is LetterKind => k !== undefined && KINDS.has(k);

/** A letter of an older version, told by its shape. Anything not a JSON object was parked as a whole body. */
function kindOf(json: unknown): LetterKind | undefined {
  if (typeof json !== 'object' || json === null || Array.isArray(json)) return 'body';
  const has = (k: string) => k in json;
  if (has('object') || has('entry')) return 'body';
  if (has('changes')) return 'entry';
  if (has('field') && has('value')) return 'change';
  if (has('status') && !has('from')) return 'status';
  if (has('from') || has('type')) return 'message';
  if (has('wa_id') || has('profile')) return 'contact';
  return undefined;
}

/** What one message came to: intake parks `invalid`, a replay reports it. */
export type TakeResult = { kind: 'published'; duplicate: boolean } | { kind: 'skipped'; code: string; reason: string } | { kind: 'invalid'; reason: string };

/** The messages of one letter (one, or those of an entry, change or body) as they were taken. */
export class ReplayTally {
  readonly published: boolean[] = [];
  readonly invalid: string[] = [];
  readonly skipped: string[] = [];
  readonly otherNumbers = new Set<string>();
  /** Statuses and contacts met on the way: not replayed, and not a reason to keep the letter. */
  passedOver = 0;

  add(r: TakeResult): void {
    if (r.kind === 'published') this.published.push(r.duplicate);
    else (r.kind === 'invalid' ? this.invalid : this.skipped).push(r.reason);
  }

  /**
   * Any message still invalid keeps the letter (`invalid`; those published meanwhile are
   * duplicates at the next replay); else published when one was, duplicate only when all were.
   */
  outcome(phoneNumberId: string): ReplayOutcome {
    if (this.invalid.length > 0) {
      const also = this.published.length > 0 ? ` (${this.published.length} other message${this.published.length === 1 ? '' : 's'} of the letter published)` : '';
      return { outcome: 'invalid', reason: `${this.invalid.join('; ')}${also}` };
    }
    if (this.published.length > 0) return { outcome: 'published', duplicate: this.published.every(Boolean) };
    if (this.skipped.length > 0) return { outcome: 'refused', reason: `skipped: ${this.skipped.join('; ')}` };
    if (this.otherNumbers.size > 0) return { outcome: 'refused', reason: `the letter's changes are for \`value.metadata.phone_number_id\` ${[...this.otherNumbers].join(', ')}, not this account's ${phoneNumberId}` };
    if (this.passedOver > 0) return { outcome: 'refused', reason: 'the letter holds no customer message, only delivery statuses or contacts, which are not replayed' };
    return { outcome: 'refused', reason: 'the letter holds no customer message (no messages change in it)' };
  }
}
