/**
 * WhatsApp through a linked-device Web session (Baileys). Unofficial: WhatsApp may ban numbers
 * that send in bulk, so pacing is conservative and there is no broadcast feature. Publishes on
 * channel "whatsapp", the same as the official Cloud API transport, so a team can move between
 * them without changing anything downstream.
 */
import { z } from 'zod';
import type { ConnectorFactory } from '../contract.js';
import { WhatsAppConnector } from './connector.js';

export const WhatsAppOptions = z.object({
  /** Which group messages open/join tickets: all, only when our number is mentioned or quoted, or none. */
  groups: z.enum(['all', 'mention', 'off']).default('all'),
  /** History sync and `append` upserts (messages from before this session): ignored, or published like new ones. */
  history: z.enum(['ignore', 'ingest']).default('ignore'),
  pairing: z
    .object({
      /** International number without "+" (e.g. 79161234567): also offer an 8-character pairing code. */
      phoneNumber: z.string().regex(/^\d{8,15}$/, 'digits only, country code first, no "+" (e.g. 79161234567)').optional(),
      /** Print the QR code to the terminal (stderr) as well as serving it on the HTTP endpoint. */
      printQr: z.boolean().default(true),
    })
    .prefault({}),
  /** Larger media are recorded as not fetched, with the reason. Default: media.maxBytes. */
  maxFileBytes: z.number().int().positive().optional(),
  reconnect: z
    .object({
      minDelayMs: z.number().int().nonnegative().default(1000),
      maxDelayMs: z.number().int().positive().default(60_000),
    })
    .prefault({}),
  /** Conservative on purpose: fast or bulk sending from a Web session gets numbers banned. */
  pacing: z
    .object({
      privateChatIntervalMs: z.number().int().nonnegative().default(3000),
      groupIntervalMs: z.number().int().nonnegative().default(6000),
      perSecond: z.number().nonnegative().default(1),
    })
    .prefault({}),
  /** An inbound media download (with Baileys' re-upload request) taking longer is recorded as failed; the message still goes through. */
  mediaDownloadTimeoutMs: z.number().int().positive().default(120_000),
  /** A send that has not completed within this time is retried (with the same message id, so it is not sent twice). */
  sendTimeoutMs: z.number().int().positive().default(30_000),
  /** Baileys' own log level (it is chatty). */
  libraryLogLevel: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('warn'),
});
export type WhatsAppOptions = z.infer<typeof WhatsAppOptions>;

const factory: ConnectorFactory<WhatsAppOptions> = {
  type: 'whatsapp',
  channel: 'whatsapp',
  options: WhatsAppOptions,
  create: (options, ctx) => new WhatsAppConnector(options, ctx),
};
export default factory;
