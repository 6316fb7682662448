import { describe, expect, it } from 'vitest';
import { cutToChars, headlineOf } from '../../src/helpdesks/headline.js';
import { displayText, withoutNul } from '../../src/core/display-text.js';

describe('helpdesk ticket headline', () => {
  it("is the customer's own subject, then the first line that is more than a greeting", () => {
    expect(headlineOf({ subject: 'Счёт № 17 — ошибка 💥', text: 'Здравствуйте!\nТекст' })).toBe('Счёт № 17 — ошибка 💥');
    expect(headlineOf({ email: { subject: 'Re: заказ' } as never, text: 'Здравствуйте!' })).toBe('Re: заказ');
    for (const greeting of ['Здравствуйте!', 'Добрый день,', 'Доброе утро, Анна!', 'Привет)', 'Hello team,', 'Добрый вечер.', 'Доброго времени суток!']) {
      expect(headlineOf({ text: `${greeting}\n\nНе приходит чек` }), greeting).toBe('Не приходит чек');
    }
    expect(headlineOf({ text: 'Здравствуйте, у меня не проходит оплата' })).toBe('Здравствуйте, у меня не проходит оплата');
    // A short request after the greeting is the request.
    for (const line of ['Здравствуйте, не работает оплата', 'Добрый день, заказ не пришёл!', 'Hi, refund please']) {
      expect(headlineOf({ text: `${line}\nНомер 12345` }), line).toBe(line);
    }
    expect(headlineOf({ text: 'Добрый день, Мария Ивановна!\nНомер 12345' })).toBe('Номер 12345');
    expect(headlineOf({ text: 'Hello team,\nRefund for 12345' })).toBe('Refund for 12345');
    expect(headlineOf({ text: 'Здравствуйте!' })).toBe('Здравствуйте!');
    expect(headlineOf({ text: '' })).toBe('');
    expect(headlineOf(undefined)).toBe('');
  });

  it('is cut by characters, never inside an emoji', () => {
    expect(cutToChars('😀'.repeat(100), 80)).toBe(`${'😀'.repeat(79)}…`);
    expect(cutToChars('коротко', 80)).toBe('коротко');
  });

  it('names lose their direction overrides and isolates, not the marks a right-to-left name needs', () => {
    expect(displayText('\u202eПётр\u202c <script>')).toBe('Пётр <script>');
    expect(displayText('\u2067שלום\u2069')).toBe('שלום');
    expect(displayText('\u200fשלום')).toBe('\u200fשלום');
    // A terminal escape and a NUL in a name; a line break in a title becomes a space.
    expect(displayText('\u001b[31mИван\u001b[0m\u0000')).toBe('[31mИван[0m');
    expect(displayText('Акт\r\nсверки')).toBe('Акт сверки');
    const plain = 'Ольга Петровна';
    expect(displayText(plain)).toBe(plain);
    expect(withoutNul('a\u0000b')).toBe('a\uFFFDb');
  });
});
