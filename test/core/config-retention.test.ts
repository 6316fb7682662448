/** The retention, reports and admin-token settings: defaults, units, and refusals that name the key. */
import { describe, expect, it } from 'vitest';
import { loadConfigOf as load, refusalOf as refusal } from '../helpers/config-file.js';

describe('retention, reports and admin tokens in the config', () => {
  it('keeps tickets and attachments for ever by default, events 30 days, repeat contacts 7 days', () => {
    const c = load({});
    expect(c.retention).toEqual({ tickets: 0, attachments: 0, events: 30 * 86_400_000, sweepInterval: 3_600_000 });
    expect(c.reports).toEqual({ repeatContactWindow: 7 * 86_400_000 });
  });

  it('reads durations with units and zones by name', () => {
    const c = load({ retention: { tickets: '1095d', attachments: '365d', events: '2h' }, reports: { repeatContactWindow: '14d', timezone: 'Asia/Yekaterinburg' } });
    expect(c.retention.tickets).toBe(1095 * 86_400_000);
    expect(c.retention.events).toBe(7_200_000);
    expect(c.reports).toEqual({ repeatContactWindow: 14 * 86_400_000, timezone: 'Asia/Yekaterinburg' });
  });

  it('refuses what cannot work, naming the key', () => {
    expect(refusal({ retention: { events: '10m' } }).key).toBe('retention.events');
    expect(refusal({ retention: { ticket: '1d' } }).message).toMatch(/did you mean "tickets"/);
    // "3m" meant three months to the lawyer who wrote it: it is three minutes, and would erase
    // every closed ticket for good; a day (files: an hour) is the least that is taken.
    for (const typo of ['3m', '1s', '23h']) {
      const r = refusal({ retention: { tickets: typo } });
      expect(r.key).toBe('retention.tickets');
      expect(r.message).toMatch(/at least 1d.*"m" is minutes/);
    }
    expect(refusal({ retention: { attachments: '3m' } }).key).toBe('retention.attachments');
    expect(load({ retention: { tickets: '1d', attachments: '1h' } }).retention).toMatchObject({ tickets: 86_400_000, attachments: 3_600_000 });
    expect(refusal({ reports: { timezone: 'Moscow' } }).key).toBe('reports.timezone');
    expect(refusal({ api: { tokens: [{ name: 'x', token: 'a-long-enough-token-0123', readOnly: true, admin: true }] } }).key).toBe('api.tokens[0].admin');
  });
});
