/**
 * The seam between the connector and Baileys' socket. Production uses makeWASocket; tests put a
 * socket whose `ev` is Baileys' own event buffer and drive it with proto-shaped events, because
 * no local server can complete WhatsApp's handshake. The hook is code-only: never in YAML.
 */
import type {
  AnyMessageContent,
  AuthenticationState,
  BaileysEventEmitter,
  MiscMessageGenerationOptions,
  SocketConfig,
  WAMessage,
} from './baileys.js';
import { makeWASocket } from './baileys.js';

/** The part of a Baileys socket the connector uses. */
export interface WaSocketLike {
  ev: BaileysEventEmitter & { process(handler: (events: Record<string, unknown>) => void | Promise<void>): () => void };
  sendMessage(jid: string, content: AnyMessageContent, options?: MiscMessageGenerationOptions): Promise<WAMessage | undefined>;
  end(error: Error | undefined): void;
  requestPairingCode(phoneNumber: string): Promise<string>;
  updateMediaMessage?(message: WAMessage): Promise<WAMessage>;
}

export type WaSocketConfig = Partial<SocketConfig> & { auth: AuthenticationState; logger: SocketConfig['logger'] };
export type SocketFactory = (config: WaSocketConfig, account: string) => WaSocketLike;

const realFactory: SocketFactory = (config) => makeWASocket(config) as unknown as WaSocketLike;
let current: SocketFactory = realFactory;

/** Tests only: replace the socket factory (pass undefined to restore Baileys' own). */
export function setSocketFactory(factory: SocketFactory | undefined): void {
  current = factory ?? realFactory;
}

export function socketFactory(): SocketFactory {
  return current;
}
