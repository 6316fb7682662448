import { describe, expect, it } from 'vitest';
import { parseRating } from '../../src/router/rating.js';

// The answer after a satisfaction request → the rating it records, or null: a message that reopens.
const TABLE: Array<[string, number | null]> = [
  // bare digits
  ['5', 5],
  ['1', 1],
  [' 4 ', 4],
  ['3.', 3],
  ['5!', 5],
  ['0', null],
  ['6', null],
  ['10', null],
  ['55', null],
  ['4.5', null],
  // out of five
  ['4/5', 4],
  ['4 / 5', 4],
  ['3 из 5', 3],
  ['3 of 5', 3],
  ['2 out of 5', 2],
  ['4/10', null],
  // stars and emoji
  ['⭐⭐⭐⭐', 4],
  ['⭐️⭐️⭐️⭐️⭐️', 5],
  ['⭐ ⭐ ⭐', 3],
  ['★★★☆☆', 3],
  ['★★☆', null],
  ['⭐⭐⭐⭐⭐⭐', null],
  ['5⭐', 5],
  ['5 ⭐', 5],
  ['⭐5', 5],
  ['5️⃣', 5],
  ['2⃣', 2],
  ['6️⃣', null],
  // fullwidth digits and words
  ['５', 5],
  ['４/５', 4],
  ['Пять', 5],
  ['пятёрка!', 5],
  ['Четыре из пяти', 4],
  ['three', 3],
  ['Five out of 5', 5],
  ['пять минут жду', null],
  ['два дня жду ответа', null],
  ['шесть', null],
  // what people put around a rating
  ['5 баллов', 5],
  ['пять баллов', 5],
  ['оценка 5', 5],
  ['Оценка: пять', 5],
  ['на пятёрку', 5],
  ['твёрдая пятёрка', 5],
  ['пятёрочка', 5],
  ['5+', 5],
  ['пять с плюсом', 5],
  ['«5»', 5],
  ['\u200b5', 5],
  ['5 баллов, но долго', null],
  ['оценка 5 минут назад', null],
  ['на 5 минут позже', null],
  // everyday one-word answers: how many, which one (a low rating escalates to the lead)
  ['Один', null],
  ['Две', null],
  ['one', null],
  ['①', null],
  ['¹', null],
  ['два из пяти', 2],
  ['one out of 5', 1],
  // sentences that start with a digit (Russian)
  ['5 минут назад снова списали деньги!', null],
  ['2 дня жду…', null],
  ['3 раза пытался дозвониться', null],
  ['5, спасибо!', null],
  ['2, долго отвечали', null],
  ['1 звезда, ужасно', null],
  ['4 из 5, но долго', null],
  // sentences (English)
  ['3 times I tried', null],
  ['5 stars', null],
  ['2 days waiting for a refund', null],
  ['5 - thanks!', null],
  // not a rating at all
  ['отлично', null],
  ['спасибо', null],
  ['Стоп, опять не работает!', null],
  ['great', null],
  ['', null],
  ['👍', null],
];

describe('rating answers', () => {
  it.each(TABLE)('%j → %s', (text, expected) => {
    expect(parseRating(text) ?? null).toBe(expected);
  });
});
