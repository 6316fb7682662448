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
