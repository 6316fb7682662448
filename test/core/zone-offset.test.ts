import { describe, expect, it } from 'vitest';
import { invertedSignWarning, offsetText, utcOffsetMinutes, zoneWithOffset } from '../../src/core/zone-offset.js';

const WINTER = new Date('2027-01-15T12:00:00Z');
const SUMMER = new Date('2027-07-15T12:00:00Z');

describe('a time zone with its UTC offset', () => {
  it('reads the offset as it is, POSIX sign inversion included', () => {
    expect(utcOffsetMinutes('Europe/Moscow', WINTER)).toBe(180);
    expect(utcOffsetMinutes('Etc/GMT+3', WINTER)).toBe(-180); // three hours behind UTC, not ahead
    expect(utcOffsetMinutes('Etc/GMT-3', WINTER)).toBe(180);
    expect(utcOffsetMinutes('Asia/Kolkata', WINTER)).toBe(330);
    expect(utcOffsetMinutes('America/St_Johns', WINTER)).toBe(-210);
    expect(utcOffsetMinutes('UTC', WINTER)).toBe(0);
  });

  it('shows the offset in effect at the given time (summer time moves it)', () => {
    expect(zoneWithOffset('Europe/Berlin', WINTER)).toBe('Europe/Berlin (UTC+01:00 now)');
    expect(zoneWithOffset('Europe/Berlin', SUMMER)).toBe('Europe/Berlin (UTC+02:00 now)');
    expect(zoneWithOffset('Etc/GMT+3', SUMMER)).toBe('Etc/GMT+3 (UTC\u221203:00 now)');
  });

  it('writes offsets with a real minus sign and minutes', () => {
    expect(offsetText(0)).toBe('UTC+00:00');
    expect(offsetText(330)).toBe('UTC+05:30');
    expect(offsetText(-210)).toBe('UTC\u221203:30');
  });

  it('warns about Etc/GMT±N only, naming what it is and what to write', () => {
    expect(invertedSignWarning('tz', 'Etc/GMT+3')).toBe(
      'tz: Etc/GMT+3 is UTC\u221203:00, not UTC+03:00: in Etc/GMT±N names the sign is inverted (POSIX). Name the place\'s zone (e.g. Europe/Moscow, Asia/Yekaterinburg), or write Etc/GMT-3 for a fixed UTC+03:00',
    );
    expect(invertedSignWarning('tz', 'etc/gmt-12')).toMatch(/^tz: etc\/gmt-12 is UTC\+12:00, not UTC\u221212:00: .* write Etc\/GMT\+12 for a fixed UTC\u221212:00$/);
    for (const zone of ['Etc/GMT+0', 'Etc/GMT', 'Etc/UTC', 'Europe/Moscow', 'UTC']) expect(invertedSignWarning('tz', zone), zone).toBeUndefined();
  });
});
