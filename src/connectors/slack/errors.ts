/** What Slack's error codes mean for us. */
import { ErrorCode } from '@slack/web-api';

/** The token itself is refused: health auth_failed until someone fixes the config. */
export const AUTH_ERRORS: ReadonlySet<string> = new Set([
  'invalid_auth', 'not_authed', 'token_revoked', 'token_expired', 'account_inactive', 'team_disabled', 'user_removed_from_team',
]);

/** Send errors that will not go away by retrying the same message. */
export const PERMANENT_SEND_ERRORS: ReadonlySet<string> = new Set([
  'channel_not_found', 'not_in_channel', 'account_inactive', 'is_archived', 'invalid_auth', 'not_authed', 'token_revoked',
  'token_expired', 'msg_too_long', 'no_text', 'restricted_action', 'cannot_reply_to_message', 'user_not_found',
  'channel_is_archived', 'team_access_not_granted', 'missing_scope', 'invalid_blocks', 'invalid_arguments', 'file_uploads_disabled',
]);

/** The `error` of a Web API platform error (`{ ok: false, error }`), if that is what this is. */
export function slackErrorCode(err: unknown): string | undefined {
  const e = err as { code?: string; data?: { error?: unknown } } | undefined;
  return e?.code === ErrorCode.PlatformError && typeof e.data?.error === 'string' ? e.data.error : undefined;
}
