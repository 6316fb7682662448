/**
 * Customer-side messages that open no ticket: auto-replies and echoes of our own mail, parked by
 * the loop guard (answering them would start a mail loop), and bounces, turned into a failed
 * delivery of the reply they bounced.
 */
import type { Bus } from '../core/bus.js';
import { DeliveryStatus, type InboundMessage } from '../core/schema.js';
import { metrics } from '../core/metrics.js';
import { Subjects } from '../core/subjects.js';
import { IndexKeys, normalizeMessageId, type TicketStore } from './tickets.js';

/** Whether a mail carries the Message-ID of one we sent: our own mail coming back. */
export async function isOurEcho(store: TicketStore, messageId: string): Promise<boolean> {
  const hit = await store.lookup(IndexKeys.ownMessageId(messageId));
  return !!hit;
}

/** An auto-reply or our own mail coming back: parked, never a ticket. */
export async function guardLoop(bus: Bus, e: InboundMessage): Promise<void> {
  metrics.ignored.inc({ channel: e.channel });
  await bus.deadLetters.park({
    source: 'loop-guard', subject: Subjects.inbound(e.channel, e.account), code: e.automated ?? 'echo',
    reason: `loop guard: ${e.automated ?? 'echo'} message opens no ticket`, payload: JSON.stringify(e),
  });
}

export async function processBounce(bus: Bus, store: TicketStore, e: InboundMessage): Promise<void> {
  const bounce = e.bounceOf!;
  const hit = (await store.lookup(IndexKeys.emailMessageId(bounce.platformMessageId))) ??
    (await store.lookup(IndexKeys.platformMessage(e.channel, e.account, bounce.platformMessageId)));
  const ticket = hit ? await store.get(hit.value) : null;
  if (!ticket) {
    await bus.deadLetters.park({
      source: 'loop-guard', subject: Subjects.inbound(e.channel, e.account), code: 'unknown_bounce', reason: 'bounce for a message we do not know', payload: JSON.stringify(e),
    });
    return;
  }
  // The reply it bounced, when that is the ticket's newest answer (also once undone by this very
  // bounce, processed again): its outcome, under its own id.
  const answer = ticket.value.lastAnswer;
  const ofAnswer = answer?.platformMessageId !== undefined && normalizeMessageId(answer.platformMessageId) === normalizeMessageId(bounce.platformMessageId);
  const status = DeliveryStatus.parse({
    v: 1, type: 'delivery.status', outboundId: ofAnswer ? answer.outboundId : `bounce:${bounce.platformMessageId}`, ticketId: ticket.value.id,
    channel: e.channel, account: e.account, status: 'failed', platformMessageId: bounce.platformMessageId,
    reason: `bounced: ${bounce.reason}`, at: e.receivedAt,
  });
  // Through the status stream like every other outcome, so the delivery recorder treats a bounce
  // as any failed reply (log, lastDelivery, the ticket back to open, ticket.delivery_failed).
  await bus.publishJson(Subjects.status(e.channel, e.account), status, `status:${status.outboundId}:failed`);
}
