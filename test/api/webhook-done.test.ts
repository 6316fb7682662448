/** The set of events a webhook term delivered beyond the ack floor, as handed to the next holder (issue 17). */
import { describe, expect, it } from 'vitest';
import { DoneSet, MAX_RANGES } from '../../src/api/webhook-done.js';

describe('webhook done set', () => {
  it('merges consecutive sequences into ranges, forgets what the ack floor covers, and reads its ranges back', () => {
    const done = new DoneSet();
    for (const s of [12, 10, 11, 15, 20, 21]) done.add(s);
    expect(done.toRanges()).toEqual([[10, 12], [15, 15], [20, 21]]);
    done.prune(11);
    expect(done.toRanges()).toEqual([[12, 12], [15, 15], [20, 21]]);
    const next = new DoneSet(done.toRanges()!);
    expect([11, 12, 13, 15, 20, 21, 22].map((s) => next.has(s))).toEqual([false, true, false, true, true, true, false]);
  });

  it('refuses to hand over more ranges than a record holds (the successor then repeats instead)', () => {
    const done = new DoneSet();
    for (let i = 0; i <= MAX_RANGES; i++) done.add(i * 2);
    expect(done.toRanges()).toBeNull();
  });
});
