/**
 * The acknowledgement depends on the moment a ticket opens (outside trial of a Russian support
 * team): inside business hours it promises an answer soon; on a Friday night, a weekend or the New
 * Year holidays it names when the team is next at work, from the same calendar the SLA clocks use.
 */
import { describe, expect, it } from 'vitest';
import { BusinessHoursConfig } from '../../src/core/config-calendar.js';
import { Texts, TextTemplate } from '../../src/core/texts.js';
import { nextOpening } from '../../src/router/business-hours.js';

const msk = (local: string) => Date.parse(`${local}+03:00`);
const hours = BusinessHoursConfig.parse({
  hours: ['09:00-19:00'],
  holidays: ['2027-01-01', '2027-01-02', '2027-01-03', '2027-01-04', '2027-01-05', '2027-01-06', '2027-01-07', '2027-01-08'],
  workdays: ['2026-12-26'],
});
const ru = new Texts('ru', {}, hours, nextOpening);
const en = new Texts('en', {}, hours, nextOpening);
const ack = (t: Texts, at: string) => t.render('autoAcknowledge', { ticket: 'T-1' }, msk(at));
const HEAD = 'Здравствуйте! Мы получили ваше обращение, его номер T-1.';

describe('the acknowledgement follows the business hours', () => {
  it('Wednesday 11:00 MSK: the team is at work', () => {
    expect(ack(ru, '2026-12-09T11:00')).toBe(`${HEAD} Ответим в ближайшее время (часы работы: пн–пт, 9:00–19:00 по Москве).`);
    expect(ack(en, '2026-12-09T11:00')).toBe('Hello! We have received your request, its number is T-1. We will answer shortly (business hours: Mon–Fri, 9:00–19:00 Moscow time).');
  });

  it('Friday 19:01 MSK and Saturday: the next opening is Monday', () => {
    expect(ack(ru, '2026-12-11T19:01')).toBe(`${HEAD} Сейчас нерабочее время, ответим в понедельник, 14 декабря, после 9:00 по Москве.`);
    expect(ack(ru, '2026-12-12T12:00')).toBe(`${HEAD} Сейчас нерабочее время, ответим в понедельник, 14 декабря, после 9:00 по Москве.`);
    expect(ack(en, '2026-12-12T12:00')).toBe('Hello! We have received your request, its number is T-1. We are closed now and will answer on Monday, 14 December, after 9:00 Moscow time.');
    // Closing time itself is closed.
    expect(ack(ru, '2026-12-11T19:00')).toContain('ответим в понедельник, 14 декабря');
  });

  it('an early morning: today, after the opening', () => {
    expect(ack(ru, '2026-12-09T07:30')).toBe(`${HEAD} Сейчас нерабочее время, ответим сегодня после 9:00 по Москве.`);
    expect(ack(en, '2026-12-09T07:30')).toContain('We are closed now and will answer today after 9:00 Moscow time.');
  });

  it('31 December evening with 1–8 January off: Monday 11 January', () => {
    expect(ack(ru, '2026-12-31T20:00')).toBe(`${HEAD} Сейчас нерабочее время, ответим в понедельник, 11 января, после 9:00 по Москве.`);
  });

  it('a transferred working Saturday is a working day', () => {
    expect(ack(ru, '2026-12-25T20:00')).toBe(`${HEAD} Сейчас нерабочее время, ответим в субботу, 26 декабря, после 9:00 по Москве.`);
    expect(ack(ru, '2026-12-26T11:00')).toContain('Ответим в ближайшее время');
  });

  it('a lunch break and another zone of Russia', () => {
    const ekb = new Texts('ru', {}, BusinessHoursConfig.parse({ timezone: 'Asia/Yekaterinburg', hours: ['09:00-13:00', '14:00-18:00'] }), nextOpening);
    // 13:30 in Yekaterinburg is 11:30 in Moscow.
    expect(ack(ekb, '2026-12-09T11:30')).toBe(`${HEAD} Сейчас нерабочее время, ответим сегодня после 14:00 по Екатеринбургу (МСК+2).`);
    expect(ack(ekb, '2026-12-09T10:30')).toContain('часы работы: пн–пт, 9:00–13:00, 14:00–18:00 по Екатеринбургу (МСК+2)');
  });

  it('24/7: the text is unchanged', () => {
    expect(ack(new Texts('ru', {}, null), '2026-12-12T03:00')).toBe(`${HEAD} Скоро ответим.`);
    expect(ack(new Texts('en', {}, null), '2026-12-12T03:00')).toBe('Hello! We have received your request, its number is T-1. We will answer shortly.');
  });

  it('custom texts: unchanged without {next}; {next} reads soon or the next opening', () => {
    const plain = new Texts('ru', { autoAcknowledge: 'Обращение {ticket} принято, {name}! Часы: {hours}.' }, hours, nextOpening);
    for (const at of ['2026-12-09T11:00', '2026-12-12T12:00']) {
      expect(plain.render('autoAcknowledge', { ticket: 'T-1', name: 'Анна' }, msk(at))).toBe('Обращение T-1 принято, Анна! Часы: пн–пт, 9:00–19:00 по Москве.');
    }
    const custom = new Texts('ru', { autoAcknowledge: '{name}, ответим {next}.' }, hours, nextOpening);
    expect(custom.render('autoAcknowledge', { ticket: 'T-1', name: 'Анна' }, msk('2026-12-09T11:00'))).toBe('Анна, ответим в ближайшее время.');
    expect(custom.render('autoAcknowledge', { ticket: 'T-1', name: 'Анна' }, msk('2026-12-12T12:00'))).toBe('Анна, ответим в понедельник, 14 декабря, после 9:00 по Москве.');
    expect(new Texts('en', { autoAcknowledge: 'We will answer {next}.' }, null, nextOpening).render('autoAcknowledge', {}, msk('2026-12-12T12:00'))).toBe('We will answer shortly.');
    // A value is substituted once: a name that looks like a placeholder stays as written.
    expect(plain.render('autoAcknowledge', { ticket: 'T-1', name: '{hours}' }, msk('2026-12-09T11:00'))).toContain('принято, {hours}!');
  });

  it('nextOpening walks the SLA calendar, and gives up on one that never opens', () => {
    expect(nextOpening(msk('2026-12-09T11:00'), hours)).toEqual({ open: true });
    expect(nextOpening(msk('2026-12-31T20:00'), hours)).toEqual({ open: false, at: msk('2027-01-11T09:00') });
    const never = BusinessHoursConfig.parse({ days: [1], holidays: Array.from({ length: 60 }, (_, i) => new Date(Date.UTC(2026, 11, 7 + 7 * i)).toISOString().slice(0, 10)) });
    expect(nextOpening(msk('2026-12-08T12:00'), never)).toEqual({ open: false, at: null });
    // Then the acknowledgement falls back to the hours it always named.
    expect(new Texts('ru', {}, never, nextOpening).render('autoAcknowledge', { ticket: 'T-1' }, msk('2026-12-08T12:00'))).toBe(`${HEAD} Ответим в рабочее время: пн, 9:00–18:00 по Москве.`);
  });

  it('{next} is a placeholder of the acknowledgement only', () => {
    expect(TextTemplate('autoAcknowledge').safeParse('Ответим {next}.').success).toBe(true);
    expect(TextTemplate('satisfactionRequest').safeParse('Оцените {next}').success).toBe(false);
  });
});
