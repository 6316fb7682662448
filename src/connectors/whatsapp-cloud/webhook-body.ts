/**
 * Walks one Meta webhook body, item by item (payload.ts checks each on its own): a message goes to
 * `message`, a status is collected by message id, and whatever fails its check is handed to
 * `park` with the dotted path of the field at fault, while the rest goes on. One unreadable item
 * failing the whole POST made Meta redeliver it for ever and lost the items after it.
 */
import { errorMessage } from '../../core/errors.js';
import { parseWebhookJson } from '../../core/json-input.js';
import type { Logger } from '../../core/logger.js';
import { ChangeValue, CloudContact, CloudStatus, REPORTED_STATUSES, WebhookBody, WebhookChange, WebhookEntry, describeAt, idOf, notAList } from './payload.js';

/** What a letter holds, in `meta.kind`: a replay reads the payload by it (replay.ts). */
export type LetterKind = 'body' | 'entry' | 'change' | 'list' | 'contact' | 'message' | 'status';

export interface WebhookSink {
  /** This connector's number: changes for another are ignored. */
  phoneNumberId: string;
  log: Logger;
  /** Rejects only when parking failed (the POST then fails, to be retried). `kind`: what `payload` is. */
  park(reason: string, payload: unknown, kind: LetterKind): Promise<void>;
  /** A `messages` change for another phone number id, passed over. */
  otherNumber?(phoneNumberId: string): void;
  /**
   * Something readable that is deliberately not taken: a change of another field than `messages`
   * (`other_change_field`), a status no delivery report carries (`unreported_status`). `what`
   * is the field or the status value.
   */
  skipped?(reason: 'other_change_field' | 'unreported_status', what: string, at: string): void;
  /** One message, `at` its path in the body, with the change's contacts that passed their check. */
  message(raw: unknown, at: string, contacts: readonly CloudContact[]): Promise<void>;
}

/** Every status of the body by message id, after its messages were handed over; throws only when `sink` did. */
export async function walkWebhook(raw: Buffer, sink: WebhookSink): Promise<Map<string, CloudStatus[]>> {
  const statuses = new Map<string, CloudStatus[]>();
  let json: unknown;
  try {
    json = parseWebhookJson(raw);
  } catch (err) {
    // Not JSON, or nested deeper than any Meta body is (json-input.ts).
    await sink.park(`whatsapp-cloud webhook: ${errorMessage(err)}`, raw, 'body');
    return statuses;
  }
  const body = WebhookBody.safeParse(json);
  if (!body.success) {
    await sink.park(`whatsapp-cloud webhook: ${describeAt(body.error, '')}`, raw, 'body');
    return statuses;
  }
  for (const [i, item] of body.data.entry.entries()) {
    const at = `entry.${i}`;
    const entry = WebhookEntry.safeParse(item);
    if (!entry.success) {
      await sink.park(`whatsapp-cloud webhook: ${describeAt(entry.error, at)}`, item, 'entry');
      continue;
    }
    for (const [j, change] of (entry.data.changes ?? []).entries()) await walkChange(change, `${at}.changes.${j}`, sink, statuses);
  }
  return statuses;
}

/**
 * One entry or one change on its own, as a dead letter holds it (`omnigate dlq --replay`): walked
 * as in a body, paths starting at `entry` or `change`. Throws only when `sink` did.
 */
export async function walkItem(kind: 'entry' | 'change', item: unknown, sink: WebhookSink): Promise<Map<string, CloudStatus[]>> {
  const statuses = new Map<string, CloudStatus[]>();
  if (kind === 'change') {
    await walkChange(item, 'change', sink, statuses);
    return statuses;
  }
  const entry = WebhookEntry.safeParse(item);
  if (!entry.success) await sink.park(`whatsapp-cloud webhook: ${describeAt(entry.error, 'entry')}`, item, 'entry');
  else for (const [j, change] of (entry.data.changes ?? []).entries()) await walkChange(change, `entry.changes.${j}`, sink, statuses);
  return statuses;
}

/** One `entry[].changes[]` item: its messages handed over, its statuses collected into `statuses`. */
async function walkChange(item: unknown, at: string, sink: WebhookSink, statuses: Map<string, CloudStatus[]>): Promise<void> {
  const change = WebhookChange.safeParse(item);
  if (!change.success) return sink.park(`whatsapp-cloud webhook: ${describeAt(change.error, at)}`, item, 'change');
  if (change.data.field !== 'messages') {
    sink.skipped?.('other_change_field', change.data.field, at);
    return;
  }
  const raw = change.data.value;
  const value = ChangeValue.safeParse(raw);
  if (!value.success) return sink.park(`whatsapp-cloud webhook: ${describeAt(value.error, `${at}.value`)}`, item, 'change');
  const phoneNumberId = value.data.metadata?.phone_number_id;
  if (phoneNumberId && phoneNumberId !== sink.phoneNumberId) {
    sink.log.debug({ phoneNumberId }, 'webhook for another phone number ignored');
    sink.otherNumber?.(phoneNumberId);
    return;
  }
  const fields = raw as Record<string, unknown>;
  const contacts: CloudContact[] = [];
  for (const [k, c] of await listOf(fields.contacts, `${at}.value.contacts`, sink)) {
    const contact = CloudContact.safeParse(c);
    if (contact.success) contacts.push(contact.data);
    else await sink.park(`whatsapp-cloud webhook: ${describeAt(contact.error, `${at}.value.contacts.${k}`)}`, c, 'contact');
  }
  for (const [k, m] of await listOf(fields.messages, `${at}.value.messages`, sink)) await sink.message(m, `${at}.value.messages.${k}`, contacts);
  for (const [k, s] of await listOf(fields.statuses, `${at}.value.statuses`, sink)) {
    const status = CloudStatus.safeParse(s);
    if (!status.success) {
      await sink.park(`whatsapp-cloud status${idOf(s) ? ` ${idOf(s)}` : ''}: ${describeAt(status.error, `${at}.value.statuses.${k}`)}`, s, 'status');
      continue;
    }
    if (!REPORTED.has(status.data.status)) {
      sink.skipped?.('unreported_status', status.data.status, `${at}.value.statuses.${k}`);
      continue;
    }
    const id = status.data.id;
    statuses.set(id, [...(statuses.get(id) ?? []), status.data]);
  }
}

const REPORTED: ReadonlySet<string> = new Set(REPORTED_STATUSES);

/** The items of a list field (absent: none); anything else but a list is parked. */
async function listOf(v: unknown, at: string, sink: WebhookSink): Promise<Array<[number, unknown]>> {
  if (v === undefined || v === null) return [];
  if (Array.isArray(v)) return [...v.entries()];
  await sink.park(`whatsapp-cloud webhook: ${at}: ${notAList(v)}`, v, 'list');
  return [];
}
