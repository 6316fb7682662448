/**
 * Which helpdesk adapter types exist. Enabling one is config only (`helpdesks: [{ type, id, … }]`):
 * the gateway loads the factory for each configured `type` from here, lazily, so an unused
 * adapter's code is never loaded. Adding a helpdesk = one folder plus one line below.
 */
import type { HelpdeskFactory } from './contract.js';

type Loader = () => Promise<{ default: HelpdeskFactory<any> }>;

const loaders: Record<string, Loader> = {
  'request-tracker': () => import('./request-tracker/index.js'),
  zammad: () => import('./zammad/index.js'),
};

export function helpdeskTypes(): string[] {
  return Object.keys(loaders).sort();
}

export async function loadHelpdeskFactories(types: Iterable<string>): Promise<Map<string, HelpdeskFactory<any>>> {
  const out = new Map<string, HelpdeskFactory<any>>();
  for (const type of new Set(types)) {
    const load = loaders[type];
    if (load) out.set(type, (await load()).default);
  }
  return out;
}
