import { describe, expect, it } from 'vitest';
import { reasonCode } from '../../src/core/errors.js';

describe('reasonCode', () => {
  it('is the leading code of a failure reason, never its free text (a label per attempt count was one label per reply)', () => {
    expect(reasonCode('retries_exhausted after 8 attempts: connect ECONNREFUSED 127.0.0.1:9')).toBe('retries_exhausted');
    expect(reasonCode('outside_24h_window: the customer wrote 30 h ago')).toBe('outside_24h_window');
    expect(reasonCode('bounced: 550 5.1.1 no such user')).toBe('bounced');
    expect(reasonCode('http_400')).toBe('http_400');
    expect(reasonCode('Forbidden: bot was blocked by the user')).toBe('delivery_failed');
    expect(reasonCode(undefined)).toBe('delivery_failed');
  });
});
