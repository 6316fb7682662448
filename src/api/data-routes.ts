/**
 * The data-governance and reporting part of /v1: `GET /v1/reports/{kind}` (JSON or CSV),
 * `POST /v1/contacts/{id}/erase` and `POST /v1/identities/erase` (admin tokens only). Reports and
 * contact erasure read the SQL read model; erasure also reaches every NATS store
 * (src/core/erasure.ts). Erasure by identifiers is for a person the read model does not know:
 * one whose every post was refused, so only dead letters (and transport copies) hold them.
 */
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { z } from 'zod';
import { queryDateOrTime } from './query-time.js';
import { queryPositiveNumber } from './query-numbers.js';
import { describeZodError } from '../core/schema.js';
import { parseJsonBody } from '../core/json-input.js';
import { Eraser, type ErasureOptions } from '../core/erasure.js';
import { ambiguousPhone, writtenPhone } from '../core/phone.js';
import type { Bus } from '../core/bus.js';
import type { Logger } from '../core/logger.js';
import type { ReadModel } from '../read-model/read-model.js';
import { eraseRows, fileReferencedElsewhere, personFootprint } from '../read-model/erasure.js';
import { GROUP_BY, REPORT_KINDS, runReport, toCsv, type ReportKind } from '../reports/reports.js';
import type { BusinessHours } from '../router/business-hours.js';
import type { TokenAuth } from './auth.js';
import { fail, failAuth, failQuery, refuseUnknownFields } from './errors.js';
import { jsonObjectBody } from './json-body.js';

export interface DataApiDeps {
  bus: Bus;
  readModel: ReadModel;
  auth: TokenAuth;
  log: Logger;
  /** The SLA calendar; null: wall-clock durations. */
  businessHours: BusinessHours | null;
  timezone: string;
  repeatWindowMs: number;
  /** Tells this process's caches the tickets are gone (the router keeps recent tickets in memory). */
  forget?: (ticketIds: string[]) => void;
}

const DAY = 86_400_000;

/** Erasure by identifiers: platform user ids, phone numbers, email addresses, usernames. */
const IdentityErasureBody = z.object({
  identities: z.array(z.string().trim().min(1, 'an identifier may not be empty').max(320)).min(1, 'give at least one identifier').max(50),
});
/** A report over more than this is refused: it would read that much history in one request. */
const MAX_RANGE_DAYS = 400;

/** Query of a report; a bare date is midnight in the reports' zone. */
const ISO_WHEN = 'an ISO date (2026-12-01) or date-time with offset (2026-12-01T09:00:00+03:00)';
const reportQuery = (timezone: string) => z
  .strictObject({
    from: queryDateOrTime(ISO_WHEN),
    to: queryDateOrTime(ISO_WHEN),
    groupBy: z.enum(GROUP_BY).optional(),
    /** repeat-contacts: the window in days (default reports.repeatContactWindow). */
    days: queryPositiveNumber(365).optional(),
    /** false: wall-clock durations even where business hours are configured. */
    businessHours: z.enum(['true', 'false']).optional(),
    format: z.enum(['json', 'csv']).optional(),
  })
  .refine((v) => instant(v.to, timezone) > instant(v.from, timezone), { message: '`to` must be after `from`', path: ['to'] });

export function registerDataApi(app: FastifyInstance, deps: DataApiDeps): void {
  const ReportQuery = reportQuery(deps.timezone);
  const guard = async (req: FastifyRequest, reply: FastifyReply) => {
    const refused = deps.auth.authorizeRequest(req);
    if (refused) return failAuth(reply, refused);
  };

  app.get<{ Params: { kind: string } }>('/v1/reports/:kind', { onRequest: guard }, async (req, reply) => {
    const kind = req.params.kind as ReportKind;
    if (!REPORT_KINDS.includes(kind)) return fail(reply, 'not_found', `no report "${req.params.kind}"; reports: ${REPORT_KINDS.join(', ')}`, 'kind');
    const q = ReportQuery.safeParse(req.query);
    if (!q.success) return failQuery(reply, q.error);
    const from = new Date(instant(q.data.from, deps.timezone));
    const to = new Date(instant(q.data.to, deps.timezone));
    if (to.getTime() - from.getTime() > MAX_RANGE_DAYS * DAY) return fail(reply, 'invalid_request', `a report covers at most ${MAX_RANGE_DAYS} days`, 'to');
    await deps.readModel.caughtUp();
    const report = await runReport(await deps.readModel.database(), kind, {
      from,
      to,
      groupBy: q.data.groupBy,
      businessHours: q.data.businessHours === 'false' ? null : deps.businessHours,
      timezone: deps.timezone,
      repeatWindowMs: q.data.days ? q.data.days * DAY : deps.repeatWindowMs,
      now: new Date(),
    });
    const csv = q.data.format === 'csv' || (q.data.format === undefined && asksForCsv(req.headers.accept));
    if (!csv) return report;
    return reply
      .header('content-type', 'text/csv; charset=utf-8')
      .header('content-disposition', `attachment; filename="${kind}-${q.data.from.slice(0, 10)}-${q.data.to.slice(0, 10)}.csv"`)
      .send(toCsv(report));
  });

  const eraser = new Eraser(deps.bus, deps.log);
  app.post<{ Params: { id: string } }>('/v1/contacts/:id/erase', async (req, reply) => {
    const who = deps.auth.authorizeAdminRequest(req);
    if ('error' in who) return failAuth(reply, who.error);
    // Erasure takes no options: a body that gives some (`{"dryRun": true}`) would be ignored and
    // the person erased for good, so anything but nothing or {} is refused before.
    const given = unexpectedBody(req.body);
    if (given) return fail(reply, 'invalid_request', `${given}: erase takes no body (nothing to set; it erases every store at once)`, given);
    await deps.readModel.caughtUp();
    const db = await deps.readModel.database();
    const person = await personFootprint(db, req.params.id);
    if (!person) return fail(reply, 'contact_not_found', `no contact with id ${req.params.id}`);
    const options: ErasureOptions = {
      reason: 'api',
      requestedBy: who.name,
      sharedElsewhere: (key, erasing) => fileReferencedElsewhere(db, key, erasing, person.foreignMessageSeqs),
    };
    deps.log.info({ contactIds: person.contactIds, tickets: person.ticketIds.length, requestedBy: who.name }, 'erasing a person: every store');
    const result = await eraser.erase(
      { ticketIds: person.ticketIds, identities: person.identities, logSequences: person.foreignMessageSeqs, objectKeys: person.objectKeys },
      options,
    );
    // Entries the projection had taken before the purge land first; then their rows go.
    await deps.readModel.caughtUp(10_000);
    result.erased.sql = await eraseRows(db, { ticketIds: person.ticketIds, contactIds: person.contactIds, messageSeqs: person.foreignMessageSeqs });
    await deps.readModel.rowsErased();
    deps.forget?.(person.ticketIds);
    await eraser.announce(result, options, person.contactIds);
    return { erasureId: result.id, contactIds: person.contactIds, ticketIds: person.ticketIds, erased: result.erased };
  });

  // A person the read model has no contact for (every post refused: only dead letters hold them):
  // the same erasure with no tickets, by the identifiers given.
  app.post('/v1/identities/erase', async (req, reply) => {
    const who = deps.auth.authorizeAdminRequest(req);
    if ('error' in who) return failAuth(reply, who.error);
    const json = jsonObjectBody(req);
    refuseUnknownFields(IdentityErasureBody, json);
    const body = IdentityErasureBody.safeParse(json);
    if (!body.success) return fail(reply, 'invalid_request', describeZodError(body.error), body.error.issues[0]!.path.join('.'));
    const identities = body.data.identities;
    // A known person is erased whole by their contact: this would leave their tickets and rows.
    await deps.readModel.caughtUp();
    for (const [i, value] of identities.entries()) {
      const found = await deps.readModel.findContacts({ handle: value, ...(value.includes('@') ? { email: value } : writtenPhone(value) ? { phone: value } : {}) });
      if (found.length > 0) {
        const ids = found.map((c) => c.id).join(', ');
        return fail(reply, 'invalid_request', `identities.${i}: "${value}" belongs to contact ${ids}: erase the contact (POST /v1/contacts/${found[0]!.id}/erase), which takes their tickets too`, `identities.${i}`);
      }
    }
    // Ten digits written as a phone without a country code ("(916) 123-45-67") are two people's
    // numbers (core/phone.ts); a lookup shows both, but an erasure would have to pick one, and
    // erasing the wrong person's data is worse than asking. Bare digits are taken as written: a
    // platform user id (Telegram's are ten digits) is more likely than a phone typed without one.
    for (const [i, value] of identities.entries()) {
      const plus7 = /^\d+$/.test(value.trim()) ? undefined : ambiguousPhone(value);
      if (plus7) return fail(reply, 'invalid_request', `identities.${i}: "${value}" ${ambiguityOf(plus7)}`, `identities.${i}`);
    }
    // An email address or a phone number is found inside texts too (a signature, "call me at …");
    // anything else (a platform id, a username) only as a whole value: as a substring, "support"
    // or "gmail.com" would erase other people's messages as well.
    const inText = identities.filter(isAddressOrPhone);
    const exact = identities.filter((v) => !isAddressOrPhone(v));
    const options: ErasureOptions = { reason: 'api', requestedBy: who.name };
    deps.log.info({ identities: identities.length, requestedBy: who.name }, 'erasing a person by identifiers: transport copies, events, dead letters');
    const result = await eraser.erase({ ticketIds: [], identities: inText, exactIdentities: exact }, options);
    await eraser.announce(result, options);
    return { erasureId: result.id, erased: result.erased };
  });
}

/** A full email address (local@domain.tld) or a phone number (10 to 15 digits, phone punctuation only, maybe an extension). */
function isAddressOrPhone(v: string): boolean {
  if (/^[^\s@]+@[^\s@]+\.[^\s@.]{2,}$/.test(v)) return true;
  const phone = writtenPhone(v);
  const digits = phone?.replace(/\D/g, '').length ?? 0;
  return digits >= 10 && digits <= 15;
}

/** Why ten digits without a country code are refused, and what to write instead. */
function ambiguityOf(plus7: string): string {
  const n = plus7.slice(2);
  const russian = `+7 ${n.slice(0, 3)} ${n.slice(3, 6)}-${n.slice(6, 8)}-${n.slice(8)}`;
  return `is ten digits without a country code: it may be the Russian or Kazakh ${russian} written without 8 or +7, or a whole number of another country (Belgium's +32 2 123 45 67 is ten digits too), and erasing the wrong person's data is worse than asking: write it with its country code, e.g. "${russian}"`;
}

/** A date alone is midnight in the reports' zone: `from=2026-03-02` means that day as the team lives it. */
function instant(value: string, timezone: string): number {
  if (!/^\d{4}-\d{2}-\d{2}$/.test(value)) return Date.parse(value);
  const utcMidnight = Date.parse(`${value}T00:00:00Z`);
  return utcMidnight - zoneOffset(utcMidnight, timezone);
}

function zoneOffset(instantMs: number, timezone: string): number {
  const p = Object.fromEntries(
    new Intl.DateTimeFormat('en-GB', { timeZone: timezone, year: 'numeric', month: '2-digit', day: '2-digit', hour: '2-digit', minute: '2-digit', second: '2-digit', hourCycle: 'h23' })
      .formatToParts(new Date(instantMs))
      .map((x) => [x.type, x.value]),
  );
  return Date.UTC(Number(p.year), Number(p.month) - 1, Number(p.day), Number(p.hour), Number(p.minute), Number(p.second)) - instantMs;
}

/** The first key of a body that should be empty (or `body` when it is not a JSON object at all); undefined for none or `{}`. */
function unexpectedBody(body: unknown): string | undefined {
  const raw = Buffer.isBuffer(body) ? body : Buffer.alloc(0);
  if (raw.toString('utf8').trim() === '') return undefined;
  let json: unknown;
  try {
    json = parseJsonBody(raw); // the same JSON edge as every other body (UTF-8, depth, lone surrogates)
  } catch {
    return 'body';
  }
  if (!json || typeof json !== 'object' || Array.isArray(json)) return 'body';
  for (const key in json) return key;
  return undefined;
}

/**
 * Whether an Accept header names text/csv, with a weight above 0 and not below JSON's (a tie goes
 * to the type the client named: JSON is the default anyway). `text/csv;q=0` means "not CSV".
 */
export function asksForCsv(accept: string | undefined): boolean {
  if (!accept) return false;
  let csv = -1;
  let json = -1;
  let jsonSpecificity = -1;
  for (const range of accept.split(',')) {
    const [type = '', ...params] = range.split(';').map((p) => p.trim().toLowerCase());
    const qParam = params.find((p) => p.startsWith('q='));
    const q = qParam === undefined ? 1 : Number(qParam.slice(2));
    const weight = Number.isFinite(q) ? Math.min(Math.max(q, 0), 1) : 0;
    if (type === 'text/csv') csv = Math.max(csv, weight);
    // The most specific range naming JSON decides its weight: application/json, application/*, */*.
    const specificity = type === 'application/json' ? 2 : type === 'application/*' ? 1 : type === '*/*' ? 0 : -1;
    if (specificity > jsonSpecificity) {
      jsonSpecificity = specificity;
      json = weight;
    } else if (specificity === jsonSpecificity && specificity >= 0) json = Math.max(json, weight);
  }
  return csv > 0 && csv >= json;
}
