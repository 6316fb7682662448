/**
 * What deliveryLoss (core/lane-consumer.ts) says of a delivery number after the last one: the
 * same number again was logged as "delivery count went back from 1 to 1", which it had not.
 */
import { describe, expect, it } from 'vitest';
import { deliveryLoss } from '../../src/core/lane-consumer.js';

describe('deliveryLoss', () => {
  it('says nothing of the next number', () => {
    expect(deliveryLoss(1, 2)).toBeUndefined();
  });

  it('counts the numbers skipped', () => {
    expect(deliveryLoss(1, 4)).toMatch(/^2 deliveries never arrived \(delivery sequence 4\)/);
  });

  it('says the count went back only when it did', () => {
    expect(deliveryLoss(3, 2)).toMatch(/^the server's delivery count went back from 3 to 2 \(/);
  });

  it('says the count did not advance when the same number comes again', () => {
    const said = deliveryLoss(1, 1);
    expect(said).toMatch(/^the server's delivery count did not advance: delivery 1 came twice \(/);
    expect(said).not.toMatch(/went back/);
  });
});
