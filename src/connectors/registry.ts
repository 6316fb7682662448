/**
 * Which connector types exist. Enabling a channel is config only: the gateway loads the factory
 * for each configured `type` from here, lazily, so an unused channel's library is never loaded.
 * Adding a channel = one folder plus one line below.
 */
import type { ConnectorFactory } from './contract.js';

type Loader = () => Promise<{ default: ConnectorFactory<any> }>;

const loaders: Record<string, Loader> = {
  webhook: () => import('./webhook/index.js'),
  telegram: () => import('./telegram/index.js'),
  email: () => import('./email/index.js'),
  slack: () => import('./slack/index.js'),
  whatsapp: () => import('./whatsapp/index.js'),
  'whatsapp-cloud': () => import('./whatsapp-cloud/index.js'),
};

export function connectorTypes(): string[] {
  return Object.keys(loaders).sort();
}

export async function loadFactories(types: Iterable<string>): Promise<Map<string, ConnectorFactory<any>>> {
  const out = new Map<string, ConnectorFactory<any>>();
  for (const type of new Set(types)) {
    const load = loaders[type];
    if (load) out.set(type, (await load()).default);
  }
  return out;
}
