/**
 * What a channel entry does with a reply's `template`, known from its configuration alone, and how
 * a wanted template fits the configured ones. The router checks a reply with it before accepting
 * it (so a helpdesk is told 400 at once, not 202 and a failed delivery later), from config on
 * every replica, whether or not it hosts the entry now; the connector checks again when it sends.
 */
import type { MessageTemplate } from './schema-outbound.js';

export interface ConfiguredTemplate {
  name: string;
  language: string;
  /** Names of the body's {{1}}, {{2}}… in order; a reply may give them by name or in order. */
  parameters: readonly string[];
}

export type TemplateSupport =
  /** Sends `text` only: a template would be dropped without a word (Telegram, Slack, email, WhatsApp Web). */
  | { kind: 'none' }
  /** Passes the template on as it is: its receiver decides (the webhook channel). */
  | { kind: 'passed-on' }
  /** Sends only these templates, and a template reply carries no attachments (WhatsApp Cloud API). */
  | { kind: 'listed'; templates: readonly ConfiguredTemplate[] };

export interface TemplateMisfit {
  code: 'template_not_configured' | 'template_parameters';
  /** The reply field at fault (dotted path). */
  field: 'template.name' | 'template.language' | 'template.parameters';
  message: string;
}

export type TemplateFit = { ok: true; template: ConfiguredTemplate; values: string[] } | ({ ok: false } & TemplateMisfit);

/** The configured template a reply asks for and its parameter values in order, or why it does not fit. */
export function templateFit(wanted: MessageTemplate, configured: readonly ConfiguredTemplate[], account = 'this account'): TemplateFit {
  const t = configured.find((c) => c.name === wanted.name && c.language === wanted.language);
  if (!t) {
    const known = configured.map((c) => `${c.name}/${c.language}`).join(', ') || 'none';
    // The name is right and only the translation is missing: say so, the fix is the language.
    const field = configured.some((c) => c.name === wanted.name) ? 'template.language' : 'template.name';
    return { ok: false, code: 'template_not_configured', field, message: `template ${wanted.name}/${wanted.language} is not configured for ${account} (configured: ${known})` };
  }
  const misfit = (message: string): TemplateFit => ({ ok: false, code: 'template_parameters', field: 'template.parameters', message });
  let values: string[];
  if (Array.isArray(wanted.parameters)) values = wanted.parameters;
  else {
    const given = wanted.parameters;
    const missing = t.parameters.filter((n) => given[n] === undefined);
    const unknown = Object.keys(given).filter((n) => !t.parameters.includes(n));
    if (missing.length > 0 || unknown.length > 0) {
      return misfit(`template ${t.name}: ${[missing.length ? `missing ${missing.join(', ')}` : '', unknown.length ? `unknown ${unknown.join(', ')}` : ''].filter(Boolean).join('; ')}`);
    }
    values = t.parameters.map((n) => given[n]!);
  }
  if (values.length !== t.parameters.length) {
    return misfit(`template ${t.name} takes ${t.parameters.length} parameters (${t.parameters.join(', ') || 'none'}), got ${values.length}`);
  }
  const bad = values.map((v, i) => ({ name: t.parameters[i]!, why: valueRefusal(v) })).filter((x) => x.why);
  if (bad.length > 0) return misfit(`template ${t.name}: ${bad.map((x) => `${x.name} ${x.why}`).join('; ')} (WhatsApp refuses such a parameter, error 132018)`);
  return { ok: true, template: t, values };
}

/**
 * What WhatsApp refuses in a body parameter's value (error 132018, or 131008 for an empty one),
 * after accepting the reply: an address typed on two lines («ул. Ленина, 5\nкв. 12»), a tab from a
 * pasted table, a run of spaces, nothing at all. Refused at the request instead, where the agent
 * still is, rather than as a failed delivery minutes later.
 */
function valueRefusal(value: string): string | undefined {
  if (value.trim() === '') return 'is empty';
  if (/[\n\r\t]/.test(value)) return 'has a line break or a tab';
  if (/ {5}/.test(value)) return 'has more than 4 spaces in a row';
  return undefined;
}

/** Finds the template support of the entry serving a channel account; undefined when this configuration cannot tell. */
export type TemplateSupportLookup = (channel: string, account: string) => TemplateSupport | undefined;
