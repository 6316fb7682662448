/**
 * A reply's `template` against what the ticket's channel entry does with one (from configuration,
 * core/reply-templates.ts): refused before the reply is accepted, naming the field, instead of a
 * 202 followed by a failed delivery, or by plain text sent where the agent chose a template.
 */
import { templateFit, type TemplateSupport } from '../core/reply-templates.js';
import type { ReplyCommand, Ticket } from '../core/schema.js';

export interface TemplateRefusal {
  field: string;
  message: string;
}

/** Undefined when the reply may go; `support` undefined (this configuration cannot tell) lets it go, for the connector to check. */
export function templateRefusal(support: TemplateSupport | undefined, ticket: Pick<Ticket, 'id' | 'channel' | 'account'>, c: Pick<ReplyCommand, 'template' | 'attachments'>): TemplateRefusal | undefined {
  const wanted = c.template;
  if (!wanted || !support || support.kind === 'passed-on') return undefined;
  const where = `${ticket.channel}/${ticket.account}`;
  if (support.kind === 'none') {
    return { field: 'template', message: `template: ${ticket.id} is a ${ticket.channel} conversation (${where}), whose channel sends no templates; send text alone` };
  }
  if (c.attachments.length > 0) return { field: 'attachments', message: `attachments: a template reply carries no attachments (${where}); send them in a reply of their own` };
  const fit = templateFit(wanted, support.templates, where);
  if (fit.ok) return undefined;
  return { field: fit.field, message: `${fit.field}: ${fit.message}` };
}

/**
 * What the agent is told about a free-form reply after the window: until when, and which templates
 * this account can send (by name and language, as the reply's `template` wants them), or that none
 * is configured: "send an approved template" alone left a team without templates guessing.
 */
export function outsideWindowMessage(ticket: Pick<Ticket, 'channel' | 'account' | 'replyWindowEndsAt'>, support: TemplateSupport | undefined): string {
  const head = `the channel allowed free-form replies until ${ticket.replyWindowEndsAt} (its window after the customer's last message)`;
  const where = `${ticket.channel}/${ticket.account}`;
  if (support?.kind !== 'listed') return `${head}; send an approved template instead`;
  if (support.templates.length === 0) return `${head}; no template is configured for ${where} (connectors[].templates), so nothing can be sent until the customer writes again`;
  const names = support.templates.map((t) => `${t.name}/${t.language}${t.parameters.length ? ` (${t.parameters.join(', ')})` : ''}`).join(', ');
  return `${head}; send one of the templates configured for ${where} as template {name, language, parameters}: ${names}`;
}
