/** JSON Schema documents for every payload on the bus, generated from the zod definitions. */
import { z } from 'zod';
import * as S from './schema.js';

export function schemaDocuments(): Record<string, unknown> {
  const docs: Record<string, z.ZodType> = {
    'inbound-event': S.InboundEvent,
    'outbound-message': S.OutboundMessage,
    'delivery-status': S.DeliveryStatus,
    'ticket-event': S.TicketEvent,
    'ticket-erased-event': S.TicketErasedEvent,
    'ticket-log-entry': S.LogEntry,
    ticket: S.Ticket,
    'connector-state-event': S.ConnectorStateEvent,
    'conversation-state-event': S.ConversationStateEvent,
    'dead-letter': S.DeadLetter,
    'audit-erasure-event': S.AuditErasureEvent,
    'audit-export-event': S.AuditExportEvent,
    'command-reply': S.ReplyCommand,
    'command-note': S.NoteCommand,
    'command-status': S.StatusCommand,
  };
  const out: Record<string, unknown> = {};
  for (const [name, schema] of Object.entries(docs)) {
    out[name] = { $id: `urn:omnigate:schema:v1:${name}`, ...z.toJSONSchema(schema, { io: 'input', unrepresentable: 'any' }) };
  }
  return out;
}
