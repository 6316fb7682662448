import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BusinessHoursConfig } from '../../src/core/config-calendar.js';
import { Texts, describeHours, humanDuration } from '../../src/core/texts.js';
import { nextOpening } from '../../src/router/business-hours.js';
import { startGateway, type TestGateway } from '../helpers/gateway.js';
import { chatMessage, publishEvent } from '../helpers/events.js';

describe('texts', () => {
  it.each<[number, string, string]>([
    [2 * 60_000, '2 мин', '2 min'],
    [90 * 60_000, '1 ч 30 мин', '1 h 30 min'],
    [3_600_000, '1 ч', '1 h'],
    [30_000, '30 с', '30 s'],
    [150_000, '2 мин 30 с', '2 min 30 s'],
    [26 * 3_600_000, '1 д 2 ч', '1 d 2 h'],
    [3_600_000 + 5_000, '1 ч', '1 h'],
    [2 * 86_400_000, '2 д', '2 d'],
  ])('%d ms → «%s» / "%s"', (ms, ru, en) => {
    expect(humanDuration(ms, 'ru')).toBe(ru);
    expect(humanDuration(ms, 'en')).toBe(en);
  });

  it('describes the configured hours', () => {
    expect(describeHours(BusinessHoursConfig.parse({}), 'ru')).toBe('пн–пт, 9:00–18:00 по Москве');
    expect(describeHours(BusinessHoursConfig.parse({ days: [1, 2, 3, 4, 5, 6], hours: ['09:00-13:00', '14:00-18:00'] }), 'en')).toBe('Mon–Sat, 9:00–13:00, 14:00–18:00 Moscow time');
    expect(describeHours(BusinessHoursConfig.parse({ timezone: 'Asia/Yekaterinburg', days: [1, 3, 5], hours: ['22:00-06:00'] }), 'ru')).toBe('пн, ср, пт, 22:00–6:00 по Екатеринбургу (МСК+2)');
    // A customer reads the city and its distance from Moscow, not the zone database's name (outside trial t10).
    expect(describeHours(BusinessHoursConfig.parse({ timezone: 'Europe/Kaliningrad' }), 'ru')).toBe('пн–пт, 9:00–18:00 по Калининграду (МСК\u22121)');
    expect(describeHours(BusinessHoursConfig.parse({ timezone: 'Europe/Volgograd' }), 'ru')).toBe('пн–пт, 9:00–18:00 по Волгограду');
    expect(describeHours(BusinessHoursConfig.parse({ timezone: 'Asia/Yekaterinburg' }), 'en')).toBe('Mon–Fri, 9:00–18:00 Yekaterinburg time (UTC+05:00)');
    expect(describeHours(BusinessHoursConfig.parse({ timezone: 'Asia/Almaty' }), 'ru')).toMatch(/^пн–пт, 9:00–18:00 \(Asia\/Almaty, UTC\+0[56]:00\)$/);
    expect(describeHours(BusinessHoursConfig.parse({ timezone: 'Etc/GMT-3' }), 'en')).toBe('Mon–Fri, 9:00–18:00 (Etc/GMT-3, UTC+03:00)');
    expect(describeHours(null, 'ru')).toBe('круглосуточно');
  });

  it('renders per language, with overrides, leaving unknown values in place', () => {
    const hours = BusinessHoursConfig.parse({ hours: ['10:00-19:00'] });
    // Wednesday 11:00 Moscow time: open (the closed wordings are in auto-ack-hours.test.ts).
    expect(new Texts('ru', {}, hours, nextOpening).render('autoAcknowledge', { ticket: 'T-1' }, Date.parse('2026-12-09T11:00+03:00'))).toBe('Здравствуйте! Мы получили ваше обращение, его номер T-1. Ответим в ближайшее время (часы работы: пн–пт, 10:00–19:00 по Москве).');
    expect(new Texts('en', {}, null).render('autoAcknowledge', { ticket: 'T-1' })).toBe('Hello! We have received your request, its number is T-1. We will answer shortly.');
    expect(new Texts('en', { lowRating: 'Low {rating} on {ticket}' }, null).render('lowRating', { rating: 2, ticket: 'T-9' })).toBe('Low 2 on T-9');
    expect(new Texts('ru', {}, null).render('satisfactionRequest', {})).toContain('{ticket}');
  });
});

describe('the default acknowledgement is built from the configured hours', () => {
  let gw: TestGateway;
  beforeAll(async () => {
    gw = await startGateway({
      router: {
        language: 'en',
        autoAcknowledge: { enabled: true },
        sla: { businessHours: { timezone: 'Europe/Samara', days: [1, 2, 3, 4, 5], hours: ['08:00-12:00', '13:00-17:00'] } },
      },
    });
  });
  afterAll(async () => gw?.stop());

  it('names the hours or the next opening, in the configured language, as of the moment it is sent', async () => {
    const texts = new Texts('en', {}, BusinessHoursConfig.parse({ timezone: 'Europe/Samara', days: [1, 2, 3, 4, 5], hours: ['08:00-12:00', '13:00-17:00'] }), nextOpening);
    const before = Date.now();
    await publishEvent(gw.nc, chatMessage({ chat: 'ack-hours' }));
    const created = await gw.waitForEvent((e) => e.type === 'ticket.created');
    const ack = await gw.waitForStreamMessage('OMNI_OUT', 'omni.out.webhook.site', (m: any) => m.ticketId === created.ticketId);
    // The real clock decides the wording; it may cross an opening or closing during the test.
    const expected = [before, Date.now()].map((at) => texts.render('autoAcknowledge', { ticket: created.ticketId }, at));
    expect(expected).toContain(ack.text);
    expect(ack.text).toMatch(/business hours: Mon–Fri, 8:00–12:00, 13:00–17:00 Samara time \(UTC\+04:00\)\.$|We are closed now and will answer .* Samara time \(UTC\+04:00\)\.$/);
  });
});

describe('the ticket line under mail we send', () => {
  it('follows router.language and keeps the token', () => {
    expect(new Texts('ru', {}, null).render('mailTicketLine', { ticket: '[#T-7]' })).toBe('Номер обращения: [#T-7]');
    expect(new Texts('en', {}, null).render('mailTicketLine', { ticket: '[#T-7]' })).toBe('Request number: [#T-7]');
    expect(new Texts('en', { mailTicketLine: 'Case {ticket}' }, null).render('mailTicketLine', { ticket: '[#T-7]' })).toBe('Case [#T-7]');
  });
});
