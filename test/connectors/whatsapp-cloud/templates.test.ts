/**
 * The connector's own template check (the safety net behind the router's, for a reply queued
 * under another configuration): a misfit fails for good before any Graph call, with the code.
 */
import { describe, expect, it } from 'vitest';
import { templateBody } from '../../../src/connectors/whatsapp-cloud/templates.js';
import { PermanentDeliveryError } from '../../../src/core/errors.js';

const configured = [{ name: 'order_update', language: 'ru', parameters: ['name', 'order'] }];

function refusal(f: () => unknown): PermanentDeliveryError {
  try {
    f();
  } catch (err) {
    if (err instanceof PermanentDeliveryError) return err;
    throw err;
  }
  throw new Error('not refused');
}

describe('whatsapp-cloud templateBody', () => {
  it('builds the Graph body from parameters in order or by name', () => {
    const body = { type: 'template', template: { name: 'order_update', language: { code: 'ru' }, components: [{ type: 'body', parameters: [{ type: 'text', text: 'Мария' }, { type: 'text', text: 'A-17' }] }] } };
    expect(templateBody({ name: 'order_update', language: 'ru', parameters: ['Мария', 'A-17'] }, configured)).toEqual(body);
    expect(templateBody({ name: 'order_update', language: 'ru', parameters: { order: 'A-17', name: 'Мария' } }, configured)).toEqual(body);
  });

  it('fails a template not configured, or parameters that do not fit, as permanent with the code', () => {
    const missing = refusal(() => templateBody({ name: 'promo', language: 'ru', parameters: [] }, configured));
    expect(missing.message).toBe('template promo/ru is not configured for this account (configured: order_update/ru)');
    expect(missing).toMatchObject({ reason: 'template_not_configured' });
    expect(refusal(() => templateBody({ name: 'order_update', language: 'ru', parameters: ['Мария'] }, configured))).toMatchObject({ reason: 'template_parameters' });
    expect(refusal(() => templateBody({ name: 'order_update', language: 'ru', parameters: { name: 'Мария', city: 'Казань' } }, configured)).message).toBe('template order_update: missing order; unknown city');
  });
});
