/**
 * What a Slack dead letter holds, read for `omnigate dlq --replay`. The connector parks the
 * envelope it was handed (the Events API's JSON body and Socket Mode's `payload` are the same
 * `event_callback` object), or, for a signed Events API body that was not JSON, the raw bytes.
 * Replay takes the envelope back through ingest's own path (shape check, normalisation, thread
 * state, users.info, files, publish) without a signature: it was checked when Slack sent it, and
 * the letter reaches the connector only over NATS from the dead-letter stream.
 *
 * Refused here, before that path: bytes that are not JSON (Slack signed them, they will not read
 * better now), and an envelope of another workspace than the one the account's token belongs to
 * now (the account was pointed at another workspace since: its channel and user ids mean nothing
 * there, and a reply would go nowhere).
 */
import { parseWebhookJson } from '../../core/json-input.js';
import type { RawEnvelope } from './shape.js';

export type LetterRead = { ok: true; body: RawEnvelope } | { ok: false; reason: string };

/** The workspace the bot token belongs to (auth.test); an org-wide install also has an enterprise. */
export interface Workspace {
  teamId?: string;
  enterpriseId?: string;
}

export function readLetter(payload: Buffer): LetterRead {
  let body: unknown;
  try {
    body = parseWebhookJson(payload); // bounded as at intake (events-api.ts)
  } catch {
    return { ok: false, reason: 'the letter holds no Slack event: the body Slack sent was not JSON, or nested too deep (see the reason), and a replay would not read it better' };
  }
  return { ok: true, body: unwrapSocketFrame(body) as RawEnvelope };
}

/**
 * A whole Socket Mode frame (`{ type: 'events_api', envelope_id, payload }`, as a capture or a
 * hand-made letter may hold it) is the envelope in its `payload`; anything else is taken as is.
 */
function unwrapSocketFrame(body: unknown): unknown {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) return body;
  const frame = body as { type?: unknown; envelope_id?: unknown; payload?: unknown };
  if (frame.type === 'events_api' && typeof frame.envelope_id === 'string' && typeof frame.payload === 'object' && frame.payload !== null) return frame.payload;
  return body;
}

/**
 * Why the envelope is not this account's, or undefined when it is (or cannot be told: no
 * team_id or enterprise_id in it, or auth.test named neither). In an org-wide install events
 * carry the workspace's team_id and the organisation's enterprise_id: either matching is enough.
 */
export function otherWorkspace(body: RawEnvelope, ours: Workspace, account: string): string | undefined {
  const team = typeof body?.team_id === 'string' && body.team_id !== '' ? body.team_id : undefined;
  const enterprise = typeof body?.enterprise_id === 'string' && body.enterprise_id !== '' ? body.enterprise_id : undefined;
  const known = new Set([ours.teamId, ours.enterpriseId].filter((x): x is string => !!x));
  if ((!team && !enterprise) || known.size === 0) return undefined;
  if ((team && known.has(team)) || (enterprise && known.has(enterprise))) return undefined;
  const theirs = [team && `\`team_id\` ${team}`, enterprise && `\`enterprise_id\` ${enterprise}`].filter(Boolean).join(', ');
  const token = [ours.teamId && `team ${ours.teamId}`, ours.enterpriseId && `enterprise ${ours.enterpriseId}`].filter(Boolean).join(', ');
  return `the event's ${theirs} is not the workspace of slack account ${account}'s token (auth.test: ${token})`;
}
