/** Which NATS errors are an outage (503, retry) and which a refusal a retry cannot cure. */
import { describe, expect, it } from 'vitest';
import { errors } from '@nats-io/nats-core';
import { JetStreamApiError } from '@nats-io/jetstream';
import { NatsUnavailableError, isNatsUnavailable, isPermissionRefusal } from '../../src/core/errors.js';

describe('NATS errors', () => {
  it('an outage is unavailable; a missing permission or JetStream switched off is not, whatever wraps it', () => {
    expect(isNatsUnavailable(new errors.TimeoutError())).toBe(true);
    expect(isNatsUnavailable(new NatsUnavailableError('JetStream did not answer within 10000 ms'))).toBe(true);
    expect(isNatsUnavailable(new errors.RequestError('no responders', { cause: new errors.NoRespondersError('omni.cmd.reply') }))).toBe(true);
    expect(isNatsUnavailable(new JetStreamApiError({ code: 503, err_code: 10008, description: 'JetStream system temporarily unavailable' }))).toBe(true);
    // A config mistake: clients told to retry would retry for ever.
    expect(isNatsUnavailable(new errors.RequestError('denied', { cause: new errors.PermissionViolationError('Permissions Violation for Publish to "omni.cmd.reply"', 'publish', 'omni.cmd.reply') }))).toBe(false);
    expect(isNatsUnavailable(new JetStreamApiError({ code: 503, err_code: 10039, description: 'jetstream not enabled for account' }))).toBe(false);
    expect(isNatsUnavailable(new Error('body is not JSON'))).toBe(false);
  });

  it('a permission refusal is recognised wherever it sits (intake answers it at once instead of waiting 20 s)', () => {
    const denied = new errors.PermissionViolationError('Permissions Violation for Publish to "omni.in.webhook.site.24"', 'publish', 'omni.in.webhook.site.24');
    expect(isPermissionRefusal(denied)).toBe(true);
    expect(isPermissionRefusal(new errors.RequestError('x', { cause: denied }))).toBe(true);
    expect(isPermissionRefusal(new errors.TimeoutError())).toBe(false);
  });
});
