/**
 * Numbers in query parameters, written in plain decimal digits. `z.coerce.number()` took what
 * JavaScript's Number() takes: `limit=0x10` was 16, `1e1` was 10 and `+5` was 5, none of which a
 * client meant to write; each is refused here with the field named, as every other bad value is.
 */
import { z } from 'zod';

/** A whole number from `min` to `max`, written in digits (`50`). */
export const queryWholeNumber = (min: number, max: number) =>
  z
    .string()
    .regex(/^\d{1,9}$/, { error: `a whole number from ${min} to ${max}, written in digits` })
    .transform(Number)
    .pipe(z.number().int().min(min, { error: `a whole number from ${min} to ${max}` }).max(max, { error: `a whole number from ${min} to ${max}` }));

/** A positive number up to `max`, written in digits with an optional decimal point (`30`, `0.5`). */
export const queryPositiveNumber = (max: number) =>
  z
    .string()
    .regex(/^\d{1,9}(\.\d{1,9})?$/, { error: `a number above 0 up to ${max}, written in digits (e.g. 30 or 0.5)` })
    .transform(Number)
    .pipe(z.number().positive({ error: `a number above 0 up to ${max}` }).max(max, { error: `a number above 0 up to ${max}` }));
