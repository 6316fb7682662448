/**
 * Message templates: the Graph `messages` body for a reply that asks for one of the configured
 * templates (name, language, parameter names). The router refuses a template that does not fit
 * before accepting the reply (core/reply-templates.ts); it is checked again here before any Graph
 * call, for a reply queued under another configuration, so it fails at once with a reason instead
 * of a Graph 132xxx error.
 */
import { PermanentDeliveryError } from '../../core/errors.js';
import { templateFit, type ConfiguredTemplate } from '../../core/reply-templates.js';
import type { MessageTemplate } from '../../core/schema.js';

export function templateBody(wanted: MessageTemplate, configured: readonly ConfiguredTemplate[]): Record<string, unknown> {
  const fit = templateFit(wanted, configured);
  if (!fit.ok) throw new PermanentDeliveryError(fit.message, fit.code);
  const { template: t, values } = fit;
  return {
    type: 'template',
    template: {
      name: t.name,
      language: { code: t.language },
      ...(values.length > 0 ? { components: [{ type: 'body', parameters: values.map((text) => ({ type: 'text', text })) }] } : {}),
    },
  };
}
