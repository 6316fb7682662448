/**
 * Checks across sections that need the connector registry (where an escalation goes must be a
 * configured, enabled connector) and the one-screen summary `omnigate check-config` prints, so a
 * lead sees what will happen: channels, timers with their effective business hours, escalations.
 */
import { ConfigError, type LoadedConfig } from './core/config.js';
import { clockText } from './core/config-calendar.js';
import { describeHours, humanDuration } from './core/texts.js';
import { invertedSignWarning, zoneWithOffset } from './core/zone-offset.js';
import type { ConnectorFactory } from './connectors/contract.js';

function channelOf(type: string, factories: Map<string, ConnectorFactory<any>>): string {
  return factories.get(type)?.channel ?? type;
}

/** References to other parts of the config: the escalation target must be an enabled connector. */
export function checkReferences(loaded: LoadedConfig, factories: Map<string, ConnectorFactory<any>>): void {
  const e = loaded.config.router.sla.escalate;
  if (!e) return;
  const enabled = loaded.connectors.map(({ entry }) => `${channelOf(entry.type, factories)}/${entry.account}`);
  const target = `${e.channel}/${e.account}`;
  if (enabled.includes(target)) return;
  const disabled = loaded.config.connectors.some((c) => !c.enabled && `${channelOf(c.type, factories)}/${c.account}` === target);
  const known = enabled.length ? `; enabled connectors: ${enabled.join(', ')}` : '; no connector is enabled';
  throw new ConfigError(
    loaded.file,
    'router.sla.escalate',
    `escalation goes to ${target}, ${disabled ? 'a connector that is disabled' : 'which is not a configured connector'}: breaches and low ratings would be lost${known}`,
  );
}

/** The time zones the config sets, by key: business hours (SLA timers, reports) and reports' own. */
function configuredZones(loaded: LoadedConfig): Array<[key: string, zone: string]> {
  const zones: Array<[string, string]> = [];
  const hours = loaded.config.router.sla.businessHours;
  if (hours) zones.push(['router.sla.businessHours.timezone', hours.timezone]);
  if (loaded.config.reports.timezone) zones.push(['reports.timezone', loaded.config.reports.timezone]);
  return zones;
}

/** What is valid but likely not meant: printed by check-config and logged at start, not refused. */
export function configWarnings(loaded: LoadedConfig, factories?: Map<string, ConnectorFactory<any>>): string[] {
  const zones = configuredZones(loaded).flatMap(([key, zone]) => invertedSignWarning(key, zone) ?? []);
  const entries = loaded.connectors.flatMap(({ entry, options }) => (factories?.get(entry.type)?.warnings?.(options) ?? []).map((w) => `${channelOf(entry.type, factories!)}/${entry.account}: ${w}`));
  return [...zones, ...entries];
}

/** What is enabled, in one screen; `now` is when time zones' offsets are shown for. */
export function describeConfig(loaded: LoadedConfig, factories: Map<string, ConnectorFactory<any>>, now = new Date()): string {
  const c = loaded.config;
  const r = c.router;
  const lang = r.language;
  const lines: string[] = [`omnigate: ${loaded.file} is valid`, ''];
  // Warnings first: the one-screen summary is read from the top.
  for (const w of configWarnings(loaded, factories)) lines.push(`Warning: ${w}`);
  if (lines.length > 2) lines.push('');
  lines.push(`NATS        ${c.nats.url || `embedded nats-server (data in ${c.nats.embedded.dataDir})`}`);
  lines.push(`HTTP        ${c.http.host}:${c.http.port}`);
  lines.push(`Channels    ${loaded.connectors.length ? '' : '(none enabled)'}`);
  for (const { entry } of loaded.connectors) lines.push(`  - ${channelOf(entry.type, factories)}/${entry.account} (${entry.type})`);
  for (const entry of c.connectors.filter((x) => !x.enabled)) lines.push(`  - ${entry.type}/${entry.account}: disabled`);
  if (c.helpdesks.length) lines.push('Helpdesks');
  for (const { entry } of loaded.helpdesks) lines.push(`  - ${entry.id} (${entry.type}), events retried for ${humanDuration(entry.retryFor, 'en')} before parking`);
  for (const entry of c.helpdesks.filter((x) => !x.enabled)) lines.push(`  - ${entry.id} (${entry.type}): disabled`);
  // With its offset: a zone's name can mislead (Etc/GMT+3 is UTC−03:00).
  const zones = configuredZones(loaded);
  if (zones.length) lines.push('Time zones');
  for (const [key, zone] of zones) lines.push(`  ${key}: ${zoneWithOffset(zone, now)}`);
  if (!r.enabled) {
    lines.push('Router      disabled on this replica (connectors only)');
    return lines.join('\n');
  }
  lines.push(`Router      tickets ${r.ticketPrefix}${r.firstTicketNumber}…, reopen within ${humanDuration(r.reopenWindow, 'en')}, texts in ${lang}`);
  const hours = r.sla.businessHours;
  const dates = (what: string, list: string[], where = '') =>
    list.length ? `; ${list.length} ${what}(s)${where}: ${list.slice(0, 5).join(', ')}${list.length > 5 ? ', …' : ''}` : '';
  const calendar = hours
    ? `${describeHours(hours, 'en')}${dates('holiday', hours.holidays)}${dates('working day', hours.workdays ?? [], ' outside those days')}`
    : '24/7 (no business hours)';
  lines.push(`Auto-ack    ${r.autoAcknowledge.enabled ? `on, at most ${r.autoAcknowledge.perSenderPerHour} per sender per hour` : 'off'}`);
  if (r.sla.enabled) {
    lines.push(`SLA         on, checked every ${humanDuration(r.sla.checkInterval, 'en')}`);
    lines.push(`  first response within ${humanDuration(r.sla.firstResponse, 'en')} of business time`);
    lines.push(`  no answer within ${humanDuration(r.sla.noAnswer, 'en')} of business time (after the first agent reply)`);
    lines.push(`  business hours: ${calendar}`);
    if (hours?.intervals.some((iv) => iv.to <= iv.from)) {
      lines.push(`  night intervals run past midnight: ${hours.intervals.filter((iv) => iv.to <= iv.from).map((iv) => `${clockText(iv.from)}–${clockText(iv.to)} (next day)`).join(', ')}`);
    }
  } else lines.push('SLA         off');
  lines.push(
    r.csat.enabled
      ? `Ratings     on: asked once per ticket ${humanDuration(r.csat.delay, 'en')} (clock time) after resolve/close; answers count for ${humanDuration(r.csat.window, 'en')}; low is <= ${r.csat.lowRating}`
      : 'Ratings     off',
  );
  const e = r.sla.escalate;
  const escalating = [r.sla.enabled && 'SLA breaches', r.csat.enabled && 'low ratings'].filter(Boolean).join(' and ');
  lines.push(`Escalation  ${e ? `${escalating || 'nothing enabled'} → ${e.channel}/${e.account}, chat ${e.conversationId}` : 'none (breaches and low ratings are only logged and announced)'}`);
  lines.push(`Webhooks    ${c.webhooks.length ? c.webhooks.map((w) => `${w.name} (${w.events.join(', ')})`).join('; ') : 'none'}`);
  lines.push(`API tokens  ${c.api.tokens.length} (${c.api.tokens.filter((t) => t.readOnly).length} read-only, ${c.api.tokens.filter((t) => t.admin).length} admin: may erase a person)`);
  lines.push(`Retention   resolved or closed tickets ${keep(c.retention.tickets)}, attachments ${keep(c.retention.attachments)}, in transit ${keep(c.nats.retention)}, events ${keep(c.retention.events)}, dead letters ${keep(c.deadLetters.maxAge)}`);
  return lines.join('\n');
}

const YEAR_MS = 365 * 86_400_000;

/** "3 years (1095 d)": a lawyer wrote `3y` and should read it back, not 1095 d. */
function keep(ms: number): string {
  if (ms <= 0) return 'for ever';
  const years = ms / YEAR_MS;
  return Number.isInteger(years) ? `${years} year${years === 1 ? '' : 's'} (${humanDuration(ms, 'en')})` : humanDuration(ms, 'en');
}
