/**
 * The cluster tests' rule for repeated reply callbacks (Fleet.verify): a repeat is allowed only as
 * a new attempt after the earlier sender was killed; a SIGTERM'd or live sender's repeat is named.
 */
import { describe, expect, it } from 'vitest';
import { forbiddenRepeats, type ReplyPost } from './fleet.js';

const post = (key: string, at: number, attempt: number, replica: string): ReplyPost => ({ key, at, attempt, replica });

describe('Fleet: repeated reply callbacks', () => {
  it('allows a new attempt after its sender was killed, and names every other repeat', () => {
    const killedAt = new Map([[101, 1_000]]);
    const posts = [
      post('after-kill', 900, 1, '101-a'), post('after-kill', 40_000, 2, '202-b'), // kill -9, then the successor
      post('live', 900, 1, '202-b'), post('live', 2_000, 2, '303-c'), // its sender was never killed
      post('same-attempt', 900, 1, '101-a'), post('same-attempt', 40_000, 1, '202-b'), // killed, but not a new attempt
      post('before-kill', 500, 1, '101-a'), post('before-kill', 800, 2, '202-b'), // repeated before the kill
      post('once', 900, 1, '202-b'),
    ];
    expect(forbiddenRepeats(posts, killedAt).map((r) => r.key)).toEqual(['live', 'same-attempt', 'before-kill']);
    expect(forbiddenRepeats(posts, killedAt)[0]!.why).toBe('reply live posted again by 303-c (attempt 2, +1100 ms) after 202-b (attempt 1, +0 ms): 202-b not killed');
  });

  it('a post without the attempt headers (an older gateway) never counts as a new attempt', () => {
    expect(forbiddenRepeats([post('k', 1, NaN, 'undefined'), post('k', 2, NaN, 'undefined')], new Map())).toHaveLength(1);
  });
});
