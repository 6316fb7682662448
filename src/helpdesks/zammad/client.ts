/**
 * The Zammad REST calls we make, with Zammad's answers sorted into what the host retries (network
 * errors, 5xx, 429, 401 — a token being rotated) and what it parks (403, 404, 422: the body's
 * `error` names why). Token auth: `Authorization: Token token=<token>`.
 */
import { errorMessage } from '../../core/errors.js';
import { callSignal, redirectRefusal, retryAfterMs } from '../../core/http.js';
import { describeFetchFailure } from '../../core/network-failure.js';
import { HelpdeskRefusedError, HelpdeskUnavailableError } from '../contract.js';

export interface ZammadUser {
  id: number;
  login: string;
  email?: string;
  firstname?: string;
  lastname?: string;
}

export interface ZammadTicket {
  id: number;
  number: string;
  title: string;
  state_id: number;
  state?: string;
  customer_id: number;
  group_id: number;
  updated_at: string;
  updated_by_id?: number;
  article_ids?: number[];
  [field: string]: unknown;
}

export interface ZammadAttachmentInfo {
  id: number;
  filename: string;
  size: string | number;
  preferences?: Record<string, unknown>;
  url?: string;
}

export interface ZammadArticle {
  id: number;
  ticket_id: number;
  type: string;
  sender: string;
  internal: boolean;
  content_type: string;
  body: string;
  from?: string;
  created_by_id: number;
  origin_by_id?: number | null;
  attachments: ZammadAttachmentInfo[];
  created_at: string;
}

export interface NewAttachment {
  filename: string;
  /** base64 */
  data: string;
  'mime-type': string;
}

export class ZammadClient {
  constructor(
    private readonly base: string,
    private readonly token: string,
    private readonly timeoutMs: number,
    /** Aborts calls in flight when the gateway stops (a slow Zammad held the stop past its budget). */
    private readonly stopping?: AbortSignal,
  ) {}

  private async call<T>(method: string, path: string, body?: unknown): Promise<T> {
    let res: Response;
    try {
      res = await fetch(`${this.base}/api/v1/${path}`, {
        method,
        headers: { authorization: `Token token=${this.token}`, 'content-type': 'application/json', accept: 'application/json' },
        body: body === undefined ? undefined : JSON.stringify(body),
        signal: callSignal(this.timeoutMs, this.stopping),
        redirect: 'manual',
      });
    } catch (err) {
      throw new HelpdeskUnavailableError(`Zammad unreachable (${method} /api/v1/${path.split('?')[0]}): ${describeFetchFailure(err, this.base, this.timeoutMs)}`);
    }
    const redirected = redirectRefusal(res);
    if (redirected) {
      await res.body?.cancel().catch(() => {});
      throw new HelpdeskRefusedError(`http_${res.status}`, `Zammad ${redirected} (helpdesks[].url)`);
    }
    const text = await res.text().catch(() => '');
    if (res.ok) {
      try {
        return (text ? JSON.parse(text) : null) as T;
      } catch {
        throw new HelpdeskUnavailableError(`Zammad answered ${res.status} with a body that is not JSON (a proxy page?)`);
      }
    }
    const reason = `Zammad answered ${res.status} to ${method} /api/v1/${path.split('?')[0]}: ${zammadError(text)}`;
    if (res.status === 429 || res.status >= 500 || res.status === 401 || res.status === 408) {
      throw new HelpdeskUnavailableError(reason, retryAfterMs(res.headers.get('retry-after')), res.status === 401);
    }
    throw new HelpdeskRefusedError(`http_${res.status}`, reason);
  }

  me(): Promise<ZammadUser> {
    return this.call('GET', 'users/me');
  }

  /** Ticket ids whose `field` is exactly `value` (Zammad's search; needs its Elasticsearch index). */
  async searchTickets(field: string, value: string): Promise<number[]> {
    const q = encodeURIComponent(`${field}:"${value.replace(/["\\]/g, '\\$&')}"`);
    const r = await this.call<{ tickets?: number[] }>('GET', `tickets/search?query=${q}&limit=10`);
    return r?.tickets ?? [];
  }

  createTicket(body: Record<string, unknown>): Promise<ZammadTicket> {
    return this.call('POST', 'tickets', body);
  }

  ticket(id: string | number): Promise<ZammadTicket> {
    return this.call('GET', `tickets/${id}?expand=true`);
  }

  updateTicket(id: string | number, body: Record<string, unknown>): Promise<ZammadTicket> {
    return this.call('PUT', `tickets/${id}`, body);
  }

  /**
   * Deletes a ticket with its articles and attachments (Zammad's destroy: nothing is kept).
   * 'gone' when there is no such ticket (deleted before). Zammad lets only a user with the
   * `admin` permission delete tickets, through a token that has it too: its refusal (401 "Not
   * authorized" or 403) is parked naming that, not retried — an operator grants it or deletes by hand.
   */
  async deleteTicket(id: string | number): Promise<'deleted' | 'gone'> {
    try {
      await this.call('DELETE', `tickets/${id}`);
      return 'deleted';
    } catch (err) {
      if (err instanceof HelpdeskRefusedError && err.code === 'http_404') return 'gone';
      const status = err instanceof HelpdeskRefusedError ? err.code : err instanceof HelpdeskUnavailableError && err.authFailed ? 'http_401' : undefined;
      if (status === 'http_401' || status === 'http_403') {
        throw new HelpdeskRefusedError(
          'permission_missing',
          `Zammad refused to delete ticket ${id} (${errorMessage(err)}): deleting tickets needs the "admin" permission on the integration user and on its API token (helpdesks[].token); the ticket and its articles are still in Zammad — grant it and replay this dead letter, or delete the ticket by hand`,
        );
      }
      throw err;
    }
  }

  createArticle(body: Record<string, unknown>): Promise<ZammadArticle> {
    return this.call('POST', 'ticket_articles', body);
  }

  articles(ticketId: string | number): Promise<ZammadArticle[]> {
    return this.call('GET', `ticket_articles/by_ticket/${ticketId}`);
  }

  async attachment(ticketId: number, articleId: number, attachmentId: number): Promise<Uint8Array> {
    let res: Response;
    try {
      res = await fetch(`${this.base}/api/v1/ticket_attachment/${ticketId}/${articleId}/${attachmentId}`, {
        headers: { authorization: `Token token=${this.token}` },
        signal: callSignal(this.timeoutMs, this.stopping),
      });
    } catch (err) {
      throw new HelpdeskUnavailableError(`Zammad unreachable (attachment ${attachmentId}): ${errorMessage(err)}`);
    }
    if (!res.ok) throw new HelpdeskUnavailableError(`Zammad answered ${res.status} to attachment ${attachmentId}`);
    return new Uint8Array(await res.arrayBuffer());
  }
}

/** Zammad's error body is {"error": "...", "error_human": "..."}. */
function zammadError(text: string): string {
  try {
    const j = JSON.parse(text) as { error?: string; error_human?: string };
    return (j.error_human ?? j.error ?? text).slice(0, 500);
  } catch {
    return text.slice(0, 200) || '(no body)';
  }
}
