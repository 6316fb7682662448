/**
 * The console shows every machine value the server sends (ticket statuses, connector states,
 * delivery outcomes, …) as words of the page's language. The codes are taken from the schema
 * itself, so a code added there without words in assets/i18n.js fails here instead of showing
 * up in English on a Russian page.
 */
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { ConnectorState, DeliveryStatus, LogEntry, TicketErasedEvent, TicketEvent, TicketStatus } from '../../src/core/schema.js';
import { DEAD_LETTER_SOURCES, subjectSuffix } from '../../src/core/dead-letter.js';
import { REPLAY_OUTCOMES } from '../../src/dlq.js';
// @ts-expect-error: a plain browser module, served as it is (no types)
import * as i18n from '../../src/console/assets/i18n.js';

const { LABELS, label, sourceClass } = i18n as {
  LABELS: Record<string, Record<string, [string, string]>>;
  label: (lang: string, kind: string, code: string) => string;
  sourceClass: (source: string) => string;
};

function entry<K extends LogEntry['kind']>(kind: K) {
  const option = LogEntry.options.find((o) => o.shape.kind.value === kind);
  if (!option) throw new Error(`no log entry ${kind}`);
  return option.shape as Record<string, { options?: readonly string[] }>;
}

/** Every kind of value the console renders, and the codes the server can send for it. */
const FROM_SCHEMA: Record<string, readonly string[]> = {
  status: TicketStatus.options,
  state: ConnectorState.options,
  delivery: DeliveryStatus.shape.status.options,
  // Escalations name a breach or `rating` (a low one): LogEntry escalation.reason.
  breach: [...entry('sla').breach!.options!, 'rating'],
  escalation: ['pending', ...entry('escalation').outcome!.options!],
  event: [...TicketEvent.shape.type.options, TicketErasedEvent.shape.type.value],
  source: DEAD_LETTER_SOURCES,
  outcome: REPLAY_OUTCOMES,
};

describe('console labels', () => {
  it('has English and Russian words for every code the server can send, and none it cannot', () => {
    const missing: string[] = [];
    for (const [kind, codes] of Object.entries(FROM_SCHEMA)) {
      for (const code of codes) {
        const [en, ru] = LABELS[kind]?.[code] ?? [];
        if (!en || !ru || !/[а-яё]/i.test(ru)) missing.push(`${kind}.${code}`);
      }
      // The status filter lists LABELS.status: a code the server no longer has would be offered.
      expect(Object.keys(LABELS[kind] ?? {}).sort(), kind).toEqual([...new Set(codes)].sort());
    }
    expect(missing).toEqual([]);
    expect(Object.keys(LABELS).sort()).toEqual(Object.keys(FROM_SCHEMA).sort());
  });

  it('says a value in the page language and keeps an unknown code as it came', () => {
    expect(label('ru', 'status', 'pending')).toBe('ждёт клиента');
    expect(label('en', 'state', 'auth_failed')).toBe('auth failed');
    expect(label('ru', 'state', 'auth_failed')).toBe('ошибка авторизации');
    expect(label('ru', 'status', 'archived')).toBe('archived');
    expect(label('ru', 'nothing', 'x')).toBe('x');
  });

  it('names who parked a dead letter from its source, as the server files it', () => {
    for (const source of DEAD_LETTER_SOURCES) expect(sourceClass(subjectSuffix(source, 'email.support'))).toBe(source);
  });

  it('passes every status, state and outcome the page renders through a label', () => {
    const page = readFileSync(new URL('../../src/console/assets/console.js', import.meta.url), 'utf8');
    // The raw values were put on the page as they came.
    for (const raw of ['tk.status)', 'active.state ||', 'ev.status}', 'e.status.status }', 'e.outcome }', 'e.breach }', "h('strong', {}, ev.type)", "'pending', 'resolved', 'closed']"]) {
      expect(page, raw).not.toContain(raw);
    }
    const kinds = [...page.matchAll(/\blbl\('(\w+)'/g)].map((m) => m[1]!);
    expect(new Set(kinds)).toEqual(new Set(Object.keys(LABELS).filter((k) => k !== 'source')));
  });
});
