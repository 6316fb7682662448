import { describe, expect, it } from 'vitest';
import { entitiesToHtml, htmlToEntities, splitFormatted, splitText } from '../../../src/connectors/telegram/format.js';

const slice = (text: string, e: { offset: number; length: number }) => text.slice(e.offset, e.offset + e.length);

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
    expect(entitiesToHtml('текст', 'not an array' as never)).toBeUndefined();
  });

  it('turns agent HTML into plain text plus entities, tolerating what editors produce', () => {
    const { text, entities } = htmlToEntities(
      '<p>Здравствуйте,&nbsp;<strong>Ольга</strong>!</p><div class="x">Ссылка: <a href="https://x.ru/?a=1&amp;b=2" target="_blank">тут</a><br>Спасибо</div><script>alert(1)</script>',
    );
    expect(text).toBe('Здравствуйте,\u00a0Ольга!\nСсылка: тут\nСпасибо');
    expect(entities).toEqual([
      { type: 'bold', offset: 14, length: 5 },
      { type: 'text_link', offset: 29, length: 3, url: 'https://x.ru/?a=1&b=2' },
    ]);
  });

  it('keeps <, & and «» literal, drops unsafe links and closes unbalanced tags', () => {
    const { text, entities } = htmlToEntities('Сумма &laquo;5 < 7 & 8&raquo; — <b>итого <i>123</b> &unknown; <a href="javascript:x">ссылка</a> <u>конец');
    expect(text).toBe('Сумма «5 < 7 & 8» — итого 123 &unknown; ссылка конец');
    expect(entities.map((e) => [e.type, slice(text, e)])).toEqual([
      ['bold', 'итого 123'],
      ['italic', '123'],
      ['underline', 'конец'],
    ]);
  });

  it('keeps code blocks verbatim with their language', () => {
    const { text, entities } = htmlToEntities('<p>Выполните:</p><pre><code class="language-bash">curl -s  https://x\n  | jq .</code></pre>');
    expect(text).toBe('Выполните:\ncurl -s  https://x\n  | jq .');
    expect(entities).toEqual([{ type: 'pre', offset: 11, length: 27, language: 'bash' }]);
  });

  it('splits formatted text with each entity clipped to its chunk', () => {
    const word = 'слово ';
    const text = word.repeat(1000).trim(); // ~6000 units
    const chunks = splitFormatted(text, [{ type: 'bold', offset: 3000, length: 2000 }]);
    expect(chunks).toHaveLength(2);
    const [a, b] = chunks as [typeof chunks[0], typeof chunks[0]];
    expect(a.text.length).toBeLessThanOrEqual(4096);
    expect(`${a.text} ${b.text}`).toBe(text);
    expect(a.entities[0]).toMatchObject({ type: 'bold', offset: 3000, length: a.text.length - 3000 });
    expect(b.entities[0]).toMatchObject({ type: 'bold', offset: 0 });
    expect(a.entities[0]!.length + b.entities[0]!.length).toBe(2000 - 1); // the space at the cut is not sent
  });
});
