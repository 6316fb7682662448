/** The set of events a webhook term delivered beyond the ack floor, as handed to the next holder (issue 17). */
import { describe, expect, it } from 'vitest';
import { DoneSet, MAX_RANGES, MAX_SEQS, PRUNE_EVERY } from '../../src/api/webhook-done.js';

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

  it('asks to be pruned every PRUNE_EVERY deliveries, and a full set hands over again once the ack floor passed what it could not list', () => {
    // A long term: pruned only at the hand-back, the set kept every event the term delivered and,
    // once full, could never be handed over again (the 30-minute soak filled it in 22 minutes).
    const done = new DoneSet();
    let turns = 0;
    for (let s = 1; s <= MAX_SEQS + 5; s++) {
      done.add(s);
      if (done.takePruneTurn()) turns++;
    }
    expect(turns).toBe(Math.floor((MAX_SEQS + 5) / PRUNE_EVERY));
    expect(done.size).toBe(MAX_SEQS);
    expect(done.toRanges()).toBeNull(); // 200,001..200,005 are done but not listed
    done.prune(MAX_SEQS + 4);
    expect(done.toRanges()).toBeNull(); // 200,005 is still beyond the floor, unlisted
    done.prune(MAX_SEQS + 5);
    expect(done.size).toBe(0);
    done.add(MAX_SEQS + 7);
    expect(done.toRanges()).toEqual([[MAX_SEQS + 7, MAX_SEQS + 7]]);
  });
});
