import { describe, expect, it } from 'vitest';
import { entitiesToHtml, htmlToEntities, splitFormatted, splitText } from '../../../src/connectors/telegram/format.js';

const slice = (text: string, e: { offset: number; length: number }) => text.slice(e.offset, e.offset + e.length);
const LONE_SURROGATE = /[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/;

/** Throws unless every tag is closed in the order it was opened; returns the text with the tags taken out, unescaped. */
function wellFormed(html: string): string {
  const open: string[] = [];
  const tag = /<(\/?)([a-z-]+)(?:\s[^<>]*)?>/g;
  let last = 0;
  let text = '';
  for (let m = tag.exec(html); m; m = tag.exec(html)) {
    text += html.slice(last, m.index);
    last = tag.lastIndex;
    if (!m[1]) open.push(m[2]!);
    else if (open.pop() !== m[2]) throw new Error(`</${m[2]}> closes the wrong tag in ${html}`);
  }
  if (open.length) throw new Error(`unclosed ${open.join(',')} in ${html}`);
  text += html.slice(last);
  if (/[<>]/.test(text)) throw new Error(`a bare < or > in ${html}`);
  return text.replace(/&lt;/g, '<').replace(/&gt;/g, '>').replace(/&quot;/g, '"').replace(/&amp;/g, '&');
}

/** A small seeded generator: the same cases on every run. */
function random(seed: number) {
  return () => {
    seed = (seed * 1103515245 + 12345) % 2 ** 31;
    return seed / 2 ** 31;
  };
}

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

  it('renders hostile entities as well-formed HTML: ranges clamped, surrogate pairs whole, only http(s)/tg links', () => {
    const text = '😀😀 hello';
    const html = entitiesToHtml(text, [
      { type: 'bold', offset: 1, length: 1e9 },
      { type: 'text_link', offset: 0, length: 2, url: 'javascript:alert(1)"><script>' },
      { type: 'pre', offset: 0, length: 1, language: '"x' },
    ])!;
    expect(html).toBe('<b><pre><code class="language-&quot;x">😀</code></pre>😀 hello</b>');
    expect(wellFormed(html)).toBe(text);
    expect(LONE_SURROGATE.test(html)).toBe(false);
    // Crossing entities are split so that each piece nests; a link keeps only a safe scheme.
    expect(entitiesToHtml('abcdefgh', [{ type: 'bold', offset: 0, length: 5 }, { type: 'italic', offset: 3, length: 5 }])).toBe('<b>abc<i>de</i></b><i>fgh</i>');
    expect(entitiesToHtml('ab', [{ type: 'text_link', offset: 0, length: 2, url: 'tg://user?id=1' }])).toBe('<a href="tg://user?id=1">ab</a>');
    expect(entitiesToHtml('ab', [{ type: 'text_link', offset: 0, length: 2, url: ' JavaScript:x' }])).toBeUndefined();
    expect(entitiesToHtml('ab', [{ type: 'text_mention', offset: 0, length: 2, user: { id: '1"><b>' as never } }])).toBeUndefined();
    expect(entitiesToHtml('ab', [{ type: 'bold', offset: 'x' as never, length: 2 }, { type: 'bold', offset: 5, length: 2 }, { type: 'bold', offset: -3, length: 2 }])).toBeUndefined();
  });

  it('renders any entities over any text as well-formed HTML holding the whole text', () => {
    const next = random(20240611);
    const pieces = ['a', ' ', '<', '&', '"', 'й', '😀', '👍🏽', '\n'];
    const types = ['bold', 'italic', 'underline', 'strikethrough', 'spoiler', 'code', 'pre', 'blockquote', 'text_link', 'text_mention', 'mention', 'url'];
    const urls = ['https://x.ru/?a=1&b="2"', 'javascript:alert(1)', 'tg://user?id=5', 'data:text/html,<b>', ''];
    const pick = <T,>(xs: T[]) => xs[Math.floor(next() * xs.length)]!;
    const failures: string[] = [];
    for (let n = 0; n < 2000; n++) {
      const text = Array.from({ length: Math.floor(next() * 12) }, () => pick(pieces)).join('');
      const entities = Array.from({ length: Math.floor(next() * 6) }, () => ({
        type: pick(types),
        offset: next() < 0.1 ? -2 : Math.floor(next() * (text.length + 2)),
        length: next() < 0.1 ? 1e9 : Math.floor(next() * (text.length + 2)) - (next() < 0.1 ? 3 : 0),
        url: pick(urls),
        language: next() < 0.5 ? pick(['ts', '"><x', '']) : undefined,
        user: { id: next() < 0.8 ? 42 : ('7"' as never) },
      }));
      const html = entitiesToHtml(text, entities);
      if (html === undefined) continue;
      let problem = '';
      try {
        if (wellFormed(html) !== text) problem = 'text changed';
      } catch (err) {
        problem = (err as Error).message;
      }
      if (LONE_SURROGATE.test(html)) problem = 'a surrogate pair split';
      if (/href="(?!https?:\/\/|tg:\/\/)/.test(html)) problem = 'an unsafe link';
      if (problem) failures.push(`${problem}: ${JSON.stringify({ text, entities, html })}`);
    }
    expect(failures).toEqual([]);
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
