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

/**
 * Connectors whose library is an optionalDependency: a build may leave it out
 * (`npm ci --omit=optional`, e.g. to ship no GPL-3.0 code: Baileys pulls in libsignal).
 */
const optionalLibraries: Record<string, string> = { whatsapp: '@whiskeysockets/baileys' };

/** A configured connector type whose library this build does not include. */
export class ConnectorUnavailableError extends Error {
  constructor(
    readonly type: string,
    readonly library: string,
  ) {
    super(
      `connector type "${type}" needs the package ${library}, which this build does not include ` +
        `(installed with --omit=optional); install it (npm install ${library})` +
        (type === 'whatsapp' ? ' or use type "whatsapp-cloud" (the official Cloud API)' : ''),
    );
    this.name = 'ConnectorUnavailableError';
  }
}

export function connectorTypes(): string[] {
  return Object.keys(loaders).sort();
}

export async function loadFactories(types: Iterable<string>): Promise<Map<string, ConnectorFactory<any>>> {
  const out = new Map<string, ConnectorFactory<any>>();
  for (const type of new Set(types)) {
    const load = loaders[type];
    if (load) out.set(type, (await load().catch((err: unknown) => rethrowMissing(type, err))).default);
  }
  return out;
}

function rethrowMissing(type: string, err: unknown): never {
  const library = optionalLibraries[type];
  const e = err as { code?: unknown; message?: unknown };
  if (library && e?.code === 'ERR_MODULE_NOT_FOUND' && String(e.message).includes(`'${library}'`)) {
    throw new ConnectorUnavailableError(type, library);
  }
  throw err;
}
