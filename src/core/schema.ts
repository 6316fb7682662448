/**
 * Event schema v1: the single definition of every payload on the bus. Each zod schema both
 * validates at the edges (connector publish, router consume, API input) and is the source of the
 * TypeScript types via z.infer. docs/events.md shows an example of each. The one module to import
 * them from; they are defined by domain in schema-*.ts, next to the parts they share.
 */
export { MimeType, PrintableId, PrintableText, SCHEMA_VERSION, SubjectToken, UNREAL_OFFSET, VisibleId, realOffset, visibleId } from './schema-base.js';
// What connectors publish: messages, edits and deletions, and the parts they are made of.
export * from './schema-inbound.js';
// What the router sends out, and what connectors say became of it.
export * from './schema-outbound.js';
// The ticket record, its log and its lifecycle events.
export * from './schema-ticket.js';
// What the API and anyone on the bus ask of the router (omni.cmd.*).
export * from './schema-commands.js';
// Connector states, dead letters and error rendering: the operational payloads.
export * from './schema-ops.js';
// Audit events (erasure): counts and who asked, no personal data.
export * from './schema-audit.js';
