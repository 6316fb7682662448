/** router.colleagueDomains and the built-in list of public mail services (src/core/mail-domains.ts). */
import { describe, expect, it } from 'vitest';
import { loadConfigOf as load, refusalOf as refusal } from '../helpers/config-file.js';
import { asciiDomain, domainOf, isPublicMailDomain, mailDomainOf } from '../../src/core/mail-domains.js';

describe('router.colleagueDomains', () => {
  it('declares no domain by default, and reads domains lower case', () => {
    expect(load({}).router.colleagueDomains).toEqual([]);
    expect(load({ router: { colleagueDomains: [' Romashka.RU ', 'mail.romashka-group.com'] } }).router.colleagueDomains).toEqual(['romashka.ru', 'mail.romashka-group.com']);
  });

  it('refuses a public mail service and anything that is not a domain name, naming the entry', () => {
    const pub = refusal({ router: { colleagueDomains: ['romashka.ru', 'Narod.ru'] } });
    expect(pub.key).toBe('router.colleagueDomains[1]');
    expect(pub.problem).toContain('public mail service');
    expect(refusal({ router: { colleagueDomains: ['gmail.com'] } }).key).toBe('router.colleagueDomains[0]');
    for (const bad of ['ivan@romashka.ru', '*.romashka.ru', 'https://romashka.ru', 'romashka', '']) {
      expect(refusal({ router: { colleagueDomains: [bad] } }).problem, bad).toContain('not a domain name');
    }
  });
});

describe('internationalised domains in router.colleagueDomains (outside trial)', () => {
  it('keeps each domain in its ASCII form, however it is written', () => {
    const loaded = load({ router: { colleagueDomains: ['компания.рф', 'КОМПАНИЯ.РФ.', 'XN--80AQEIGDI5K.xn--p1ai', 'Romashka.RU.', 'münchen.de'] } }).router.colleagueDomains;
    expect(loaded).toEqual(['xn--80aqeigdi5k.xn--p1ai', 'xn--80aqeigdi5k.xn--p1ai', 'xn--80aqeigdi5k.xn--p1ai', 'romashka.ru', 'xn--mnchen-3ya.de']);
  });

  it('refuses a domain that does not convert, naming the entry', () => {
    for (const bad of ['xn--zz.ru', 'компания .рф', 'a.xn--']) {
      const r = refusal({ router: { colleagueDomains: ['romashka.ru', bad] } });
      expect(r.key, bad).toBe('router.colleagueDomains[1]');
      expect(r.problem, bad).toContain('not a domain name');
    }
  });

  it('refuses a public service written any way: case, a trailing dot, fullwidth letters', () => {
    for (const pub of ['GMAIL.COM.', 'ｇｍａｉｌ.com', 'Mail.Ru']) {
      const r = refusal({ router: { colleagueDomains: [pub] } });
      expect(r.key, pub).toBe('router.colleagueDomains[0]');
      expect(r.problem, pub).toContain(`"${pub}" is a public mail service`);
      expect(isPublicMailDomain(pub), pub).toBe(true);
    }
  });

  it('compares the domain of an address in ASCII form', () => {
    expect(asciiDomain('компания.рф')).toBe('xn--80aqeigdi5k.xn--p1ai');
    expect(asciiDomain(' Компания.РФ. ')).toBe('xn--80aqeigdi5k.xn--p1ai');
    expect(asciiDomain('xn--zz.ru')).toBeUndefined();
    expect(asciiDomain('')).toBeUndefined();
    expect(mailDomainOf('ivan@компания.рф')).toBe(mailDomainOf('IVAN@XN--80AQEIGDI5K.XN--P1AI'));
    expect(mailDomainOf('ivan@компания.рф.')).toBe('xn--80aqeigdi5k.xn--p1ai');
    // лечениенаркомании.рф is another domain.
    expect(mailDomainOf('ivan@xn--80aanaardaperhcem4a6i.xn--p1ai')).not.toBe(mailDomainOf('ivan@компания.рф'));
    expect(mailDomainOf('support')).toBeUndefined();
  });
});

describe('public mail services', () => {
  it('knows the services Russian-speaking customers write from', () => {
    for (const d of ['narod.ru', 'yandex.ua', 'yandex.kz', 'yandex.by', 'ya.ru', 'rambler.ua', 'myrambler.ru', 'ro.ru', 'lenta.ru', 'autorambler.ru', 'e1.ru', 'ngs.ru',
      'mail.ua', 'ukr.net', 'i.ua', 'bigmir.net', 'pm.me', 'proton.me', 'protonmail.ch', 'gmx.net', 'gmx.de', 'web.de', 'yahoo.co.uk', 'hotmail.co.uk', 'live.ru',
      'outlook.de', 'icloud.com', 'me.com', 'mac.com', 'gmail.com', 'mail.ru', 'bk.ru', 'yandex.ru']) {
      expect(isPublicMailDomain(d), d).toBe(true);
    }
    expect(isPublicMailDomain('NAROD.RU')).toBe(true);
    expect(isPublicMailDomain('romashka.ru')).toBe(false);
  });

  it('takes the domain after the last "@", lower case', () => {
    expect(domainOf('Ivan.Petrov@Narod.RU')).toBe('narod.ru');
    expect(domainOf('"a@b"@client.ru')).toBe('client.ru');
    expect(domainOf('no-domain')).toBeUndefined();
    expect(domainOf('trailing@')).toBeUndefined();
  });
});
