/** The primitives every payload schema shares (schema.ts and schema-ops.ts both build on them). */
import { z } from 'zod';

export const SCHEMA_VERSION = 1 as const;

/** Channel and account names become NATS subject tokens, so they are restricted to a safe set. */
export const SubjectToken = z
  .string()
  .min(1)
  .max(64)
  .regex(/^[A-Za-z0-9_-]+$/, 'letters, digits, "_" and "-" only (it becomes a NATS subject token)');

export const IsoTime = z.string().datetime({ offset: true });
