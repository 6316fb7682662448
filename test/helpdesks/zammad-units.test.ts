/** Zammad: logins for chat customers (ASCII, one per customer whatever the alphabet of their id), and agent HTML as text. */
import { describe, expect, it } from 'vitest';
import { loginFor } from '../../src/helpdesks/zammad/adapter.js';

describe('Zammad customer logins', () => {
  it('keeps ASCII ids as they were and gives Cyrillic ids a login of their own', () => {
    expect(loginFor('telegram', 'bot1', '9001')).toBe('telegram-bot1-9001');
    const ivan = loginFor('webhook', 'site', 'иван');
    const petr = loginFor('webhook', 'site', 'петр');
    expect(ivan).not.toBe(petr); // both were "webhook-site-____": one Zammad user for two customers
    expect(ivan).toMatch(/^webhook-site-____-[0-9a-f]{12}$/);
    expect(loginFor('webhook', 'site', 'хакер')).not.toBe(loginFor('webhook', 'site', 'ольга'));
    expect(loginFor('webhook', 'site', 'иван')).toBe(ivan); // stable: the same customer finds their user again
  });
});

describe('Zammad agent HTML as text', () => {
  it('drops what a browser never shows (script, style, comments)', async () => {
    const { htmlToText } = await import('../../src/helpdesks/zammad/intake.js');
    expect(htmlToText('<p>Счёт во вложении</p><script>alert(1)</script><style>p{}</style><!-- черновик -->')).toBe('Счёт во вложении');
  });
});
