/** The one phone normaliser (src/core/phone.ts): contact identities, lookups and erasure all use it. */
import { describe, expect, it } from 'vitest';
import { ambiguousPhone, asciiDigits, normalizePhone, phoneDigitForms, phoneLookupValues, recordedPhoneForms, writtenPhone } from '../../src/core/phone.js';
import { provenIdentities } from '../../src/read-model/contacts.js';
import type { InboundMessage } from '../../src/core/schema.js';

describe('normalizePhone', () => {
  it('reads the Russian and Kazakh domestic format 8 + 10 digits as +7', () => {
    for (const raw of ['89161110001', '8 916 111-00-01', '8 (916) 111-00-01', '8-916-111-00-01', ' 8.916.111.00.01 ']) expect(normalizePhone(raw), raw).toBe('+79161110001');
    expect(normalizePhone('8 495 123-45-67')).toBe('+74951234567'); // Moscow
    expect(normalizePhone('8 343 123-45-67')).toBe('+73431234567'); // Yekaterinburg
    expect(normalizePhone('8 800 555-35-35')).toBe('+78005553535'); // toll-free
    expect(normalizePhone('8 727 123 45 67')).toBe('+77271234567'); // Almaty
    expect(normalizePhone('8 701 123 45 67')).toBe('+77011234567'); // Kazakh mobile
  });

  it('leaves what is international already as written', () => {
    expect(normalizePhone('+7 916 111-00-01')).toBe('+79161110001');
    expect(normalizePhone('79161110001')).toBe('+79161110001');
    // With "+" nothing is rewritten, whatever follows.
    expect(normalizePhone('+84 95 123 4567')).toBe('+84951234567'); // Vietnam
    expect(normalizePhone('+8 916 111-00-01')).toBe('+89161110001');
    // Not the +7 zone: 8 followed by an area code no Russian or Kazakh number has.
    expect(normalizePhone('81312345678')).toBe('+81312345678'); // Japan, +81 3 …
    expect(normalizePhone('85212345678')).toBe('+85212345678'); // Hong Kong
    // Not 11 digits: not the domestic format.
    expect(normalizePhone('8613812345678')).toBe('+8613812345678'); // China mobile
    expect(normalizePhone('8916111000')).toBe('+8916111000');
  });

  it('drops the international prefixes 00 and 810 (the old Russian "8 10")', () => {
    expect(normalizePhone('0049 30 1234567')).toBe('+49301234567');
    expect(normalizePhone('00 7 916 111-00-01')).toBe('+79161110001');
    expect(normalizePhone('8 10 49 30 1234567')).toBe('+49301234567');
    expect(normalizePhone('810 375 29 123-45-67')).toBe('+375291234567'); // Belarus
    expect(normalizePhone('+810 49 30 1234567')).toBe('+81049301234567'); // with "+": as written
  });

  it('is no phone under 7 or over 15 digits', () => {
    expect(normalizePhone('12345')).toBeUndefined();
    expect(normalizePhone('00 12345')).toBeUndefined();
    expect(normalizePhone('1234567890123456')).toBeUndefined();
    expect(normalizePhone('нет')).toBeUndefined();
  });
});

describe('lookups and erasure', () => {
  it('looks a domestic number up as +7 and as it was stored before it was understood', () => {
    expect(phoneLookupValues('8 916 111-00-01')).toEqual(['+79161110001', '+89161110001']);
    expect(phoneLookupValues('+7 916 111-00-01')).toEqual(['+79161110001']);
    expect(phoneLookupValues('abc')).toEqual([]);
  });

  it('searches stored payloads for every way the number is written in digits', () => {
    expect(phoneDigitForms('8 916 111-00-02').sort()).toEqual(['79161110002', '89161110002']);
    expect(phoneDigitForms('+7 916 111-00-02').sort()).toEqual(['79161110002', '89161110002']);
    expect(phoneDigitForms('+49 30 1234567')).toEqual(['49301234567']);
  });

  it('never searches for a short form: a Telegram chat id or a US (810) number is not "810" + seven digits (review)', () => {
    expect(normalizePhone('8101234567')).toBe('+8101234567');
    expect(normalizePhone('(810) 555-0100')).toBe('+8105550100');
    expect(phoneDigitForms('8101234567')).toEqual(['8101234567']);
    expect(phoneDigitForms('(810) 555-0100')).toEqual(['8105550100']);
    // Under ten digits nothing is searched inside texts (the identifier still matches as a whole value).
    expect(phoneDigitForms('123-45-67')).toEqual([]);
    expect(phoneDigitForms('00 1234567')).toEqual([]);
  });

  it('stores a Telegram contact card written 89161234567 as +79161234567', () => {
    const e = {
      v: 1, type: 'message.inbound', id: 'telegram:bot:1', channel: 'telegram', account: 'bot',
      conversation: { id: '555', kind: 'private' }, sender: { id: '555', handles: {} }, text: '', format: 'plain', attachments: [],
      parts: [{ type: 'contact', name: 'Иван', phone: '89161234567', userId: '555' }],
      platform: { messageId: '1' }, receivedAt: new Date().toISOString(),
    } as unknown as InboundMessage;
    expect(provenIdentities(e)).toContainEqual(expect.objectContaining({ kind: 'phone', value: '+79161234567', proof: 'contact_card' }));
  });
});

describe('ten digits without a country code (outside trial)', () => {
  it('never reinterprets them where platform ids are read too: identities and erasure\'s digit forms stay as written', () => {
    for (const raw of ['(916) 123-45-67', '9161234567']) {
      expect(normalizePhone(raw), raw).toBe('+9161234567');
      expect(phoneDigitForms(raw), raw).toEqual(['9161234567']);
    }
    // A WhatsApp id has no "+": it is international as it is.
    expect(normalizePhone('79161234567')).toBe('+79161234567');
  });

  it('looks an operator\'s number up both ways: as written and as +7', () => {
    expect(phoneLookupValues('(916) 123-45-67')).toEqual(['+9161234567', '+79161234567']);
    expect(phoneLookupValues('9161234567')).toEqual(['+9161234567', '+79161234567']);
    // Belgium's +32 2 123 45 67 is ten digits too, which is why both are looked up.
    expect(phoneLookupValues('3221234567')).toEqual(['+3221234567', '+73221234567']);
    // No +7 number starts with 0, 1, 2 or 5: nothing to guess.
    expect(phoneLookupValues('5123456789')).toEqual(['+5123456789']);
    // With "+", or with 8, 7, 00 in front, it says which it is.
    expect(phoneLookupValues('+9161234567')).toEqual(['+9161234567']);
    expect(phoneLookupValues('8 916 123-45-67')).toEqual(['+79161234567', '+89161234567']);
    expect(phoneLookupValues('7 916 123-45-67')).toEqual(['+79161234567']);
  });

  it('names the ambiguity, for erasure to refuse it', () => {
    expect(ambiguousPhone('(916) 123-45-67')).toBe('+79161234567');
    expect(ambiguousPhone('9161234567')).toBe('+79161234567');
    expect(ambiguousPhone('４９５ １２３ ４５ ６７')).toBe('+74951234567');
    expect(ambiguousPhone('(495) 123-45-67 доб. 12')).toBe('+74951234567');
    for (const clear of ['+9161234567', '+7 916 123-45-67', '8 916 123-45-67', '79161234567', '5123456789', '123-45-67', 'ivan@romashka.ru', 'user9161234567']) {
      expect(ambiguousPhone(clear), clear).toBeUndefined();
    }
  });
});

describe('how numbers are typed (outside trial)', () => {
  it('reads fullwidth and other Unicode digits (NFKC, then any script\'s decimal digits)', () => {
    expect(normalizePhone('８９１６１２３４５６７')).toBe('+79161234567');
    expect(normalizePhone('＋７（９１６）１２３－４５－６７')).toBe('+79161234567');
    expect(normalizePhone('٨٩١٦١٢٣٤٥٦٧')).toBe('+79161234567'); // Arabic-Indic
    expect(normalizePhone('𝟖𝟗𝟏𝟔𝟏𝟐𝟑𝟒𝟓𝟔𝟕')).toBe('+79161234567'); // mathematical, touching runs of ten
    expect(phoneLookupValues('８ ９１６ １２３-４５-６７')).toEqual(['+79161234567', '+89161234567']);
    expect(phoneDigitForms('８９１６１２３４５６７').sort()).toEqual(['79161234567', '89161234567']);
    expect(asciiDigits('тел. ８９１６ ٤٥')).toBe('тел. 8916 45');
  });

  it('drops an extension: it reaches a person inside one switchboard, not whose number it is', () => {
    for (const raw of ['+7 495 123-45-67 доб. 123', '+7 495 123-45-67 доб 123', '+7 495 123-45-67, доб.123', '+7 (495) 123-45-67 добавочный 5',
      '+7 495 123-45-67 ext. 12', '+7 495 123-45-67 EXT 12', '+7 495 123-45-67 extension 12', '+7 495 123-45-67 x12', '+7 495 123-45-67 #12',
      '+7-495-123-45-67;ext=12', '+7 495 123-45-67 (доб. 123)', '8 495 123-45-67 доб. 123']) {
      expect(normalizePhone(raw), raw).toBe('+74951234567');
      expect(phoneLookupValues(raw)[0], raw).toBe('+74951234567');
      expect(phoneDigitForms(raw).sort(), raw).toEqual(['74951234567', '84951234567']);
    }
    expect(writtenPhone('+7 495 123-45-67 доб. 123')).toBe('+7 495 123-45-67');
    // Nothing before it: no number, and no extension of one.
    expect(normalizePhone('доб. 123')).toBeUndefined();
    expect(normalizePhone('x12')).toBeUndefined();
  });

  it('tells a phone as written from anything else', () => {
    for (const phone of ['+7 916 123-45-67', '8 (916) 123-45-67', '8.916.123.45.67', '+7 916 123–45–67', '８９１６１２３４５６７', '+7 495 123-45-67 доб. 123']) expect(writtenPhone(phone), phone).toBeDefined();
    for (const other of ['ivan@romashka.ru', 'user-123', 'Звоните 89161234567', '7+916', '']) expect(writtenPhone(other), other).toBeUndefined();
  });
});


describe('a phone recorded as the customer typed it (a web form; outside trial)', () => {
  it('is compared by digits in every form of the number, the ten national digits only where no "+" was written', () => {
    for (const typed of ['+7 903 111-22-33', '+79031112233', '8 (903) 111-22-33', '8-903-111-22-33', '79031112233', '9031112233']) {
      const forms = recordedPhoneForms(typed);
      expect(forms.digits, typed).toEqual(expect.arrayContaining(['79031112233', '89031112233']));
      expect(forms.unprefixed, typed).toEqual(['9031112233']);
    }
    expect(recordedPhoneForms('+1 903 111 22 33')).toEqual({ digits: ['19031112233'], unprefixed: [] });
    expect(recordedPhoneForms('ivan@mail.ru')).toEqual({ digits: [], unprefixed: [] });
  });
});
