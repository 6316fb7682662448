/**
 * Delivery outcomes a connector's send() reports by throwing. The outbound runner retries the
 * transient kind with backoff (or exactly after retryAfterMs when the platform said so) and
 * turns the permanent kind into a failed delivery with the reason, never retrying it.
 */
export class TransientDeliveryError extends Error {
  constructor(
    message: string,
    /** The platform's own wait (Telegram retry_after, Slack Retry-After), in ms. */
    readonly retryAfterMs?: number,
  ) {
    super(message);
    this.name = 'TransientDeliveryError';
  }
}

export class PermanentDeliveryError extends Error {
  constructor(
    message: string,
    /** Stable machine-readable reason: "blocked_by_user", "chat_not_found", "channel_not_found"... */
    readonly reason: string = 'permanent_failure',
  ) {
    super(message);
    this.name = 'PermanentDeliveryError';
  }
}

/**
 * This process cannot send for the account at all, while another replica can (a WhatsApp Web
 * session lives in the one process holding its lease). The message is handed back to the
 * shared queue for a replica that can, without counting an attempt.
 */
export class SendElsewhereError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'SendElsewhereError';
  }
}

export function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
