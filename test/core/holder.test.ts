/** Lease holder names: what a successor may recognise as its dead predecessor's, and nothing else. */
import { describe, expect, it } from 'vitest';
import { heldByInstance, holderOf, isInstanceId, newInstanceId } from '../../src/core/holder.js';

describe('holder names', () => {
  it('a new instance id starts with the pid, is a KV key token, and is recognised as one', () => {
    const id = newInstanceId();
    expect(id.startsWith(`${process.pid}-`)).toBe(true);
    expect(id).toMatch(/^[A-Za-z0-9_-]+$/);
    expect(isInstanceId(id)).toBe(true);
    expect(newInstanceId()).not.toBe(id);
  });

  it('a cut-short or hand-edited instance file names nobody', () => {
    for (const s of ['', '1', '1-', '8282-host', '8282-host-zzzzzz', '8282-host-abcdef\nextra', ' 8282-host-abcdef']) expect(isInstanceId(s)).toBe(false);
  });

  it('an instance holds its roles, not another instance whose id merely starts alike', () => {
    const dead = '8282-host-abc123';
    expect(heldByInstance(holderOf(dead, 'router'), dead)).toBe(true);
    expect(heldByInstance(dead, dead)).toBe(true);
    expect(heldByInstance(holderOf('8282-host-abc1234', 'router'), dead)).toBe(false);
    expect(heldByInstance('8282-host-abc12', dead)).toBe(false);
  });
});
