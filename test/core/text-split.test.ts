/** One cut for every channel that caps a message: never inside a word, a line or a surrogate pair when it can help it. */
import { describe, expect, it } from 'vitest';
import { splitTextAt } from '../../src/core/text-split.js';
import { splitText as whatsappCloudSplit } from '../../src/connectors/whatsapp-cloud/sender.js';

describe('splitTextAt', () => {
  it('cuts a long Russian reply between words, losing no text (WhatsApp cut «Д|линный» in the middle)', () => {
    const words = Array.from({ length: 900 }, (_, i) => (i % 7 === 0 ? 'Длинный' : 'ответ'));
    const text = words.join(' ');
    const parts = whatsappCloudSplit(text);
    expect(parts.length).toBeGreaterThan(1);
    for (const p of parts) {
      expect(p.length).toBeLessThanOrEqual(4096);
      expect(p).toMatch(/^(Длинный|ответ)( (Длинный|ответ))*$/);
    }
    expect(parts.join(' ')).toBe(text);
  });

  it('prefers paragraphs, then lines; keeps emoji whole when it has to cut a word', () => {
    const para = 'а'.repeat(3000);
    expect(splitTextAt(`${para}\n\n${para}`, 4096)).toEqual([para, para]);
    expect(splitTextAt(`${para}\n${para}`, 4096)).toEqual([para, para]);
    const emoji = '😀'.repeat(3000);
    const parts = splitTextAt(emoji, 4095);
    expect(parts.join('')).toBe(emoji);
    for (const p of parts) expect(p).toMatch(/^(😀)+$/u);
    expect(whatsappCloudSplit('')).toEqual([]);
  });

  it('ends a part at a sentence rather than leaving one word for the next message', () => {
    const sentence = 'Мы проверили ваш заказ, всё в порядке. ';
    const body = sentence.repeat(Math.floor(4060 / sentence.length));
    const last = 'Доставка по Москве займёт от двух до трёх рабочих';
    const text = `${body}${last} дней.`;
    expect(text.length).toBeGreaterThan(4096);
    const parts = splitTextAt(text, 4096);
    expect(parts.length).toBe(2);
    expect(parts[0]).toMatch(/порядке\.$/);
    expect(parts[1]!.length).toBeGreaterThan(20);
    expect(parts.join(' ')).toBe(text);
    // Closing quotes and brackets stay with their sentence; no sentence end in reach: a word boundary as before.
    expect(splitTextAt(`${'а'.repeat(60)} «Готово!» ${'б'.repeat(30)}`, 80)).toEqual([`${'а'.repeat(60)} «Готово!»`, 'б'.repeat(30)]);
    expect(splitTextAt(`${'слово '.repeat(20)}конец`, 50)[0]!.endsWith('слово')).toBe(true);
  });

  it('does not end a sentence at an abbreviation or before a lower-case word; closes curly quotes with it (review of stop 47)', () => {
    const lead = `${'а'.repeat(60)} Мы проверили ваш заказ.`;
    const abbreviated = `${lead} И т. д. конец, ул. Ленина, д. 5, кв. 7 и так далее`;
    const parts = splitTextAt(abbreviated, abbreviated.length - 10);
    expect(parts[0]).toBe(lead);
    expect(parts.join(' ')).toBe(abbreviated);
    // ”: an English closing quote stays with its sentence.
    const quoted = `${'а'.repeat(40)} he said “Done.” ${'Б'.repeat(30)} ${'в'.repeat(20)}`;
    expect(splitTextAt(quoted, quoted.length - 5)[0]).toBe(`${'а'.repeat(40)} he said “Done.”`);
  });
});
