/**
 * Baileys 6.x is CommonJS; Node's ESM loader cannot see its re-exported names, so the runtime
 * values come off the default import here, once, with their types intact.
 */
import * as ns from '@whiskeysockets/baileys';
import type { UserFacingSocketConfig, WASocket } from '@whiskeysockets/baileys';

type Lib = typeof ns;
// Node's ESM loader hands the CommonJS exports object over as `default`; bundlers that honour
// `__esModule` (vitest) hand over the named exports directly. Take whichever has them.
const maybeDefault = (ns as unknown as { default?: unknown }).default;
const lib: Lib = maybeDefault && typeof maybeDefault === 'object' && 'proto' in maybeDefault ? (maybeDefault as Lib) : ns;

export const {
  BufferJSON,
  Browsers,
  DisconnectReason,
  downloadMediaMessage,
  generateWAMessage,
  initAuthCreds,
  isJidBroadcast,
  isJidGroup,
  isJidNewsletter,
  isJidUser,
  isLidUser,
  jidNormalizedUser,
  makeCacheableSignalKeyStore,
  makeEventBuffer,
  prepareWAMessageMedia,
  normalizeMessageContent,
  proto,
} = lib;

type MakeWASocket = (config: UserFacingSocketConfig) => WASocket;
const d = (lib as unknown as { default: unknown }).default;
export const makeWASocket = (typeof d === 'function' ? d : (d as { default: unknown }).default) as MakeWASocket;

export type {
  AnyMessageContent,
  AuthenticationCreds,
  AuthenticationState,
  BaileysEventEmitter,
  BaileysEventMap,
  Contact,
  ConnectionState,
  MiscMessageGenerationOptions,
  SignalDataSet,
  SignalDataTypeMap,
  SignalKeyStore,
  SocketConfig,
  WAMessage,
  WAMessageKey,
} from '@whiskeysockets/baileys';
