import { describe, expect, it } from 'vitest';
import { asksForCsv } from '../../src/api/data-routes.js';

describe('Accept negotiation for reports', () => {
  it('answers CSV only when text/csv is named with a weight above 0 and not below JSON\'s', () => {
    for (const accept of ['text/csv', 'TEXT/CSV; charset=utf-8', 'text/csv, application/json', 'application/json;q=0.5, text/csv', 'text/csv;q=0.8, */*;q=0.5', 'text/csv;q=0.5, application/*;q=0.4, */*'])
      expect(asksForCsv(accept), accept).toBe(true);
    for (const accept of [undefined, '', '*/*', 'application/json', 'text/csv;q=0', 'text/csv; q=0.0, application/json', 'text/csv;q=0.5, application/json', 'text/*', 'text/csv;q=abc', 'text/csvx', 'text/csv;q=0.3, application/*;q=0.9'])
      expect(asksForCsv(accept), String(accept)).toBe(false);
  });
});
