/** Times in query parameters (ticket lists, reports), refused with the field named when SQL or the reports' calendar cannot take them. */
import { z } from 'zod';
import { UNREAL_OFFSET, realOffset } from '../core/schema-base.js';

/**
 * The earliest year a query may name. PostgreSQL refuses year 0 and JavaScript's Date maps
 * years 0–99 to 1900–1999 on the way through a time zone: both answered 500. No ticket is older.
 */
const EARLIEST_YEAR = 1900;
const notTooEarly = (v: string) => Number(v.slice(0, 4)) >= EARLIEST_YEAR;
const TOO_EARLY = { error: `a year from ${EARLIEST_YEAR} on` };

/** ISO 8601 date-time with an offset (`2026-12-01T09:00:00+03:00`, `…Z`). */
export const QueryDateTime = z.iso
  .datetime({ offset: true, error: 'an ISO date-time with its offset, e.g. 2026-12-06T00:00:00+03:00 or …Z (a bare date is not taken here: say whose midnight)' })
  .refine(notTooEarly, TOO_EARLY)
  .refine(realOffset, UNREAL_OFFSET);

/** An ISO date-time with offset, or a bare date (`2026-12-01`); `error`: what either should look like. */
export const queryDateOrTime = (error: string) => z.union([z.iso.datetime({ offset: true }), z.iso.date()], { error }).refine(notTooEarly, TOO_EARLY).refine(realOffset, UNREAL_OFFSET);
