/**
 * The Events API endpoint, mounted on the gateway's HTTP server at
 * POST /connectors/slack/<account>/events.
 *
 * Why not a Bolt Receiver: Bolt's App.processEvent calls ack() for Events API payloads before any
 * listener runs, so a receiver that answers on ack() would tell Slack "got it" before the event is
 * in JetStream. A receiver could hold the answer until processEvent resolves, but then a listener
 * failure only reaches the global error handler and Bolt's authorize/ignoreSelf/conversation
 * machinery sits between us and the answer for nothing. Verifying the signature
 * ourselves (signature.ts says why not Bolt's verifySlackRequest) and answering after ctx.publish is shorter and says exactly when Slack hears
 * 200: only after the event was stored (or deliberately skipped or parked).
 */
import type { RawRequest, RawResponse } from '../../core/http.js';
import { errorMessage } from '../../core/errors.js';
import { parseWebhookJson } from '../../core/json-input.js';
import type { Logger } from '../../core/logger.js';
import { eventIdOf, type RawEnvelope } from './shape.js';
import { verifySlackSignature } from './signature.js';

export interface EventsEndpointOptions {
  signingSecret: string;
  log: Logger;
  /**
   * Resolves once stored/skipped/parked (an event of the wrong shape is parked, so it gets 200);
   * rejects to make Slack retry. retryNum: x-slack-retry-num.
   */
  onEvent: (body: RawEnvelope, retryNum: number) => Promise<void>;
  /** Park a signed body that is not JSON. */
  deadLetter: (reason: string, payload: unknown) => Promise<void>;
  /** False until auth.test told us who we are (the loop guard needs our user id). */
  ready: () => Promise<boolean>;
}

export function eventsEndpoint(o: EventsEndpointOptions): (req: RawRequest) => Promise<RawResponse> {
  return async (req) => {
    const verdict = verifySlackSignature({
      signingSecret: o.signingSecret,
      rawBody: req.rawBody,
      signature: req.headers['x-slack-signature'],
      timestamp: req.headers['x-slack-request-timestamp'],
    });
    if (!verdict.ok) {
      o.log.debug({ reason: verdict.reason }, 'Slack request refused');
      return { status: 401, body: { error: 'unauthorized', message: `invalid Slack request: ${verdict.reason}` } };
    }
    // Signed bytes verified; only now decoded (JSON is UTF-8 by RFC 8259), nested at most as deep
    // as any body the other platforms' webhooks take (json-input.ts).
    let body: RawEnvelope;
    try {
      body = parseWebhookJson(req.rawBody) as RawEnvelope;
    } catch (err) {
      await o.deadLetter(`slack event body refused: ${errorMessage(err)}`, req.rawBody);
      // Signed by Slack yet unreadable: a retry would not read better.
      return { status: 400, headers: { 'x-slack-no-retry': '1' }, body: { error: 'invalid_json', message: errorMessage(err), field: 'body' } };
    }
    if (body?.type === 'url_verification') return { status: 200, body: { challenge: body.challenge } };
    if (!(await o.ready())) return { status: 503, body: { error: 'starting', message: 'connector is not connected to Slack yet' } };
    try {
      await o.onEvent(body, Number(req.headers['x-slack-retry-num']) || 0);
      return { status: 200, body: '' };
    } catch (err) {
      o.log.warn({ err: errorMessage(err), eventId: eventIdOf(body), retry: req.headers['x-slack-retry-num'] }, 'Slack event not stored; Slack will retry');
      return { status: 500, body: { error: 'unavailable', message: 'event not stored yet' } };
    }
  };
}
