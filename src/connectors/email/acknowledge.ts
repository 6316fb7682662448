/**
 * Telling the IMAP server that mail is done (\Seen or moved, with our processed keyword; parked
 * mail flagged instead): only after its event or dead letter was stored, only under the
 * UIDVALIDITY it was read under, and only while the mailbox lease is ours.
 */
import type { ImapFlow } from 'imapflow';
import type { Logger } from '../../core/logger.js';
import { StaleLeaseError, type Fence } from '../contract.js';
import type { Checkpoint } from './checkpoint.js';
import type { EmailOptions, MailboxOptions } from './index.js';

/** The folder being acknowledged in, and what decides how. */
export interface AcknowledgeIn {
  mailbox: MailboxOptions;
  options: EmailOptions;
  fence: Fence;
  log: Logger;
  /** mailbox/folder, for logs and errors. */
  label: string;
}

/** Flags set under another UIDVALIDITY would land on other mail than was read. */
export async function confirmUidValidity(client: ImapFlow, folder: string, cp: Checkpoint): Promise<void> {
  const selected = client.mailbox;
  const status = selected && selected.path === folder ? await client.status(folder, { uidValidity: true }) : false;
  const now = status && status.uidValidity !== undefined ? String(status.uidValidity) : undefined;
  if (!selected || String(selected.uidValidity) !== cp.uidValidity || now !== cp.uidValidity) {
    throw new Error(`UIDVALIDITY is ${now ?? 'unknown'} now, not ${cp.uidValidity} as when the mail was read: not acknowledging it; reading the folder again in a new session`);
  }
}

/**
 * Tells the server the mail is done: only ever after its event (or dead letter) was stored.
 * A parked mail must never look handled: it stays unread where it is, \Flagged and with the
 * parked keyword so people reading the mailbox see it (and can search for it); our processed
 * keyword keeps a rescan from parking it again.
 */
export async function acknowledge(client: ImapFlow, a: AcknowledgeIn, uids: number[], parked: number[]): Promise<void> {
  const { mailbox, options, fence } = a;
  // Fencing: a holder that woke past its mailbox lease must not flag or move mail another
  // replica now reads. The sync fails; a new session starts once the lease is ours again.
  if (!fence.valid()) throw new StaleLeaseError(fence, `acknowledging ${uids.length + parked.length} mails in ${a.label}`);
  if (parked.length > 0) {
    await client.messageFlagsAdd(parked.join(','), ['\\Flagged', options.parkedKeyword, options.processedKeyword], { uid: true });
    a.log.warn({ folder: a.label, uids: parked, keyword: options.parkedKeyword }, 'mail parked as a dead letter: left unread and flagged in the mailbox');
  }
  if (uids.length === 0) return;
  const set = uids.join(',');
  if (mailbox.afterProcessing === 'move') {
    await client.messageFlagsAdd(set, [options.processedKeyword], { uid: true });
    await client.messageMove(set, mailbox.processedFolder, { uid: true });
  } else {
    await client.messageFlagsAdd(set, ['\\Seen', options.processedKeyword], { uid: true });
  }
}

/** The folder acknowledged mail is moved to (afterProcessing: move), created when missing. */
export async function ensureProcessedFolder(client: ImapFlow, folder: string): Promise<void> {
  const list = await client.list();
  if (!list.some((f) => f.path === folder)) await client.mailboxCreate(folder).catch(() => {});
}

