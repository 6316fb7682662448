import { describe, expect, it } from 'vitest';
import { entitiesToHtml, splitText, toTelegramHtml } from '../../../src/connectors/telegram/format.js';

describe('telegram text handling', () => {
  it('splits past 4096 UTF-16 units on boundaries and never inside a surrogate pair', () => {
    const para = 'Проверьте, пожалуйста, настройки кассы. '.repeat(60);
    const chunks = splitText(`${para}\n\n${para}\n\n${para}`);
    expect(chunks.length).toBeGreaterThan(1);
    for (const c of chunks) expect(c.length).toBeLessThanOrEqual(4096);
    expect(chunks.join('').replace(/\s+/g, '')).toBe(`${para}\n\n${para}\n\n${para}`.replace(/\s+/g, '')); // nothing lost, order kept
    const emoji = '😀'.repeat(3000); // 6000 units, no spaces
    const parts = splitText(emoji);
    expect(parts.join('')).toBe(emoji);
    for (const p of parts) expect(p.length).toBeLessThanOrEqual(4096);
    expect(parts.every((p) => !/[\ud800-\udbff]$/.test(p))).toBe(true);
  });

  it('renders entities (UTF-16 offsets) as escaped HTML', () => {
    const text = '😀 Заказ <№1> оплачен';
    const html = entitiesToHtml(text, [
      { type: 'bold', offset: 3, length: 5 },
      { type: 'text_link', offset: 9, length: 4, url: 'https://shop.example.ru/o?id=1&x=2' },
    ]);
    expect(html).toBe('😀 <b>Заказ</b> <a href="https://shop.example.ru/o?id=1&amp;x=2">&lt;№1&gt;</a> оплачен');
    expect(entitiesToHtml('просто текст', [{ type: 'mention', offset: 0, length: 3 }])).toBeUndefined();
  });

  it('reduces agent HTML to the tags Telegram accepts', () => {
    expect(toTelegramHtml('<p>Здравствуйте, <strong>Ольга</strong>!</p><div class="x">Ссылка: <a href="https://x.ru" target="_blank">тут</a><br>Спасибо</div><script>x</script>'))
      .toBe('Здравствуйте, <strong>Ольга</strong>!\nСсылка: <a href="https://x.ru">тут</a>\nСпасибо\nx');
  });
});
