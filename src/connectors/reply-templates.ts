/**
 * Every configured entry's template support (ConnectorFactory.replyTemplates) by channel and
 * account, for the router's check of a reply. From configuration, not from running connectors:
 * the replica answering a reply command may not host the entry (another holds its lease).
 */
import type { TemplateSupport, TemplateSupportLookup } from '../core/reply-templates.js';
import type { ConnectorFactory } from './contract.js';

export interface TemplateSupportSpec {
  factory: ConnectorFactory<any>;
  account: string;
  options: unknown;
}

export function templateSupportOf(specs: readonly TemplateSupportSpec[]): TemplateSupportLookup {
  const byAccount = new Map<string, TemplateSupport | 'ambiguous'>();
  for (const { factory, account, options } of specs) {
    const key = `${factory.channel}/${account}`;
    const support = factory.replyTemplates?.(options) ?? { kind: 'none' };
    // Two transports of one channel under one account name (whatsapp and whatsapp-cloud): which
    // one sends a reply is not known here, so neither is checked (the connector still is).
    byAccount.set(key, byAccount.has(key) ? 'ambiguous' : support);
  }
  return (channel, account) => {
    const found = byAccount.get(`${channel}/${account}`);
    return found === 'ambiguous' ? undefined : found;
  };
}
