import { describe, expect, it } from 'vitest';
import { cloneJson } from '../../src/core/clone-json.js';

describe('cloneJson', () => {
  it('copies JSON-shaped data deeply, as structuredClone does', () => {
    const t = { v: 1, id: 'T-1', a: [1, 'x', null, { b: [true, false] }], o: { p: { q: 'Здравствуйте' } }, u: undefined, e: [], n: null };
    const c = cloneJson(t);
    expect(c).toStrictEqual(structuredClone(t));
    expect('u' in c).toBe(true);
    c.a.push(2);
    (c.a[3] as { b: boolean[] }).b.push(true);
    c.o.p.q = 'changed';
    expect(t.a).toHaveLength(4);
    expect((t.a[3] as { b: boolean[] }).b).toEqual([true, false]);
    expect(t.o.p.q).toBe('Здравствуйте');
  });
});
