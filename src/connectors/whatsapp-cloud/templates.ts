/**
 * Message templates: the configured ones (name, language, parameter names) and the Graph
 * `messages` body for a reply that asks for one. A template is checked here before any Graph
 * call, so a name, language or parameter list WhatsApp Manager does not have fails at once with
 * a reason instead of a Graph 132xxx error.
 */
import { PermanentDeliveryError } from '../../core/errors.js';
import type { MessageTemplate } from '../../core/schema.js';

export interface ConfiguredTemplate {
  name: string;
  language: string;
  /** Names of the body's {{1}}, {{2}}… in order; a reply may give them by name or in order. */
  parameters: string[];
}

export function templateBody(wanted: MessageTemplate, configured: ConfiguredTemplate[]): Record<string, unknown> {
  const t = configured.find((c) => c.name === wanted.name && c.language === wanted.language);
  if (!t) {
    const known = configured.map((c) => `${c.name}/${c.language}`).join(', ') || 'none';
    throw new PermanentDeliveryError(`template ${wanted.name}/${wanted.language} is not configured for this account (configured: ${known})`, 'template_not_configured');
  }
  let values: string[];
  if (Array.isArray(wanted.parameters)) values = wanted.parameters;
  else {
    const given = wanted.parameters;
    const missing = t.parameters.filter((n) => given[n] === undefined);
    const unknown = Object.keys(given).filter((n) => !t.parameters.includes(n));
    if (missing.length > 0 || unknown.length > 0) {
      throw new PermanentDeliveryError(`template ${t.name}: ${[missing.length ? `missing ${missing.join(', ')}` : '', unknown.length ? `unknown ${unknown.join(', ')}` : ''].filter(Boolean).join('; ')}`, 'template_parameters');
    }
    values = t.parameters.map((n) => given[n]!);
  }
  if (values.length !== t.parameters.length) {
    throw new PermanentDeliveryError(`template ${t.name} takes ${t.parameters.length} parameters (${t.parameters.join(', ') || 'none'}), got ${values.length}`, 'template_parameters');
  }
  return {
    type: 'template',
    template: {
      name: t.name,
      language: { code: t.language },
      ...(values.length > 0 ? { components: [{ type: 'body', parameters: values.map((text) => ({ type: 'text', text })) }] } : {}),
    },
  };
}
