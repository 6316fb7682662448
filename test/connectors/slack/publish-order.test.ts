import { describe, expect, it } from 'vitest';
import { PublishOrder } from '../../../src/connectors/slack/publish-order.js';

describe('PublishOrder', () => {
  it('lets an event of a conversation go only after every earlier one left, whichever was ready first', async () => {
    const order = new PublishOrder();
    const went: string[] = [];
    const first = order.enter('C1/1');
    const second = order.enter('C1/1');
    const third = order.enter('C1/1');
    const other = order.enter('C2/1');
    const go = (name: string, t: { ready: Promise<void>; leave: () => void }) => t.ready.then(() => went.push(name)).finally(t.leave);
    // The third was prepared first and the second failed before its turn: neither passes the first.
    const third_ = go('third', third);
    second.leave();
    await other.ready;
    went.push('other');
    other.leave();
    expect(went).toEqual(['other']);
    const first_ = go('first', first);
    await Promise.all([first_, third_]);
    expect(went).toEqual(['other', 'first', 'third']);
    expect(order.size).toBe(0);
  });
});
