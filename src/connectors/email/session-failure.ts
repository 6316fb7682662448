/**
 * How a failed IMAP connect is reported: a refused login as `auth_failed`, so ops learn the
 * password is wrong, and anything else as `disconnected`; never with our password in the words.
 */
import type { ConnectorState } from '../../core/schema.js';
import { errorMessage } from '../../core/errors.js';

/** RFC 5530 codes on a refused login that say the server is in trouble, not that our password is wrong. */
const NOT_THE_CREDENTIALS = new Set(['UNAVAILABLE', 'INUSE', 'LIMIT', 'SERVERBUG']);

/**
 * The state a failed connect leaves: `auth_failed` when the server refused the login (imapflow
 * sets `authenticationFailed` on a tagged NO/BAD to LOGIN/AUTHENTICATE), else `disconnected`.
 * `NO [UNAVAILABLE]` (RFC 5530: the server's auth backend is down, as Dovecot says it), and the
 * other transient codes of RFC 5530, are not the credentials' fault: `disconnected`, so no one
 * changes a password that was right.
 * The detail names the mailbox and folder (`label`); the server's words never carry `pass`.
 */
export function sessionFailure(err: unknown, label: string, pass: string | undefined): { state: ConnectorState; detail: string } {
  const e = err as { authenticationFailed?: boolean; responseText?: string; serverResponseCode?: string };
  if (e.authenticationFailed && !NOT_THE_CREDENTIALS.has(e.serverResponseCode?.toUpperCase() ?? '')) {
    const said = e.responseText ? ` (${redact(e.responseText, pass)})` : '';
    return { state: 'auth_failed', detail: `${label}: IMAP login refused${said}: check the IMAP user and password; retrying` };
  }
  return { state: 'disconnected', detail: `${label}: ${redact(errorMessage(err), pass)}` };
}

function redact(text: string, pass: string | undefined): string {
  return pass ? text.split(pass).join('***') : text;
}
