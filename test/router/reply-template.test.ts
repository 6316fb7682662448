/**
 * The reply command's template check from configuration (router/reply-template.ts over
 * connectors/reply-templates.ts): which entries are checked, which are left to the connector.
 */
import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import { templateSupportOf } from '../../src/connectors/reply-templates.js';
import type { ConnectorFactory } from '../../src/connectors/contract.js';
import type { TemplateSupport } from '../../src/core/reply-templates.js';
import { outsideWindowMessage, templateRefusal } from '../../src/router/reply-template.js';

const factory = (type: string, channel: string, replyTemplates?: (o: unknown) => TemplateSupport): ConnectorFactory<unknown> => ({
  type, channel, options: z.unknown(), create: () => { throw new Error('not created: the check reads config only'); }, ...(replyTemplates && { replyTemplates }),
});
const cloud = factory('whatsapp-cloud', 'whatsapp', () => ({ kind: 'listed', templates: [{ name: 'order_update', language: 'ru', parameters: ['name', 'order'] }] }));
const web = factory('whatsapp', 'whatsapp');
const telegram = factory('telegram', 'telegram');
const webhook = factory('webhook', 'webhook', () => ({ kind: 'passed-on' }));
const template = { name: 'order_update', language: 'ru', parameters: ['Мария'] };
const ticket = (channel: string, account: string) => ({ id: 'T-1', channel, account });

describe('reply template check from configuration', () => {
  it('checks each entry by its factory, without creating a connector', () => {
    const lookup = templateSupportOf([
      { factory: cloud, account: 'shop', options: {} },
      { factory: web, account: 'old', options: {} },
      { factory: telegram, account: 'bot1', options: {} },
      { factory: webhook, account: 'site', options: {} },
    ]);
    const refuse = (channel: string, account: string, attachments: unknown[] = []) =>
      templateRefusal(lookup(channel, account), ticket(channel, account), { template, attachments: attachments as never });
    expect(refuse('whatsapp', 'shop')).toEqual({ field: 'template.parameters', message: 'template.parameters: template order_update takes 2 parameters (name, order), got 1' });
    expect(refuse('whatsapp', 'old')?.field).toBe('template');
    expect(refuse('telegram', 'bot1')?.field).toBe('template');
    expect(refuse('webhook', 'site')).toBeUndefined();
    // An account this configuration does not have: left to the connector.
    expect(refuse('telegram', 'elsewhere')).toBeUndefined();
  });

  it('leaves an account name two transports of one channel share to the connector', () => {
    const lookup = templateSupportOf([{ factory: cloud, account: 'shop', options: {} }, { factory: web, account: 'shop', options: {} }]);
    expect(lookup('whatsapp', 'shop')).toBeUndefined();
  });

  it('lets a reply without a template go everywhere', () => {
    const lookup = templateSupportOf([{ factory: telegram, account: 'bot1', options: {} }]);
    expect(templateRefusal(lookup('telegram', 'bot1'), ticket('telegram', 'bot1'), { attachments: [] })).toBeUndefined();
  });
});

describe('the 409 of a free-form reply after the window', () => {
  const late = { channel: 'whatsapp', account: 'shop', replyWindowEndsAt: '2026-12-07T16:57:11.000Z' };
  const head = "the channel allowed free-form replies until 2026-12-07T16:57:11.000Z (its window after the customer's last message)";
  it('names the templates the account can send, or says there are none', () => {
    expect(outsideWindowMessage(late, { kind: 'listed', templates: [{ name: 'order_update', language: 'ru', parameters: ['name', 'order'] }, { name: 'ping', language: 'ru', parameters: [] }] }))
      .toBe(`${head}; send one of the templates configured for whatsapp/shop as template {name, language, parameters}: order_update/ru (name, order), ping/ru`);
    expect(outsideWindowMessage(late, { kind: 'listed', templates: [] }))
      .toBe(`${head}; no template is configured for whatsapp/shop (connectors[].templates), so nothing can be sent until the customer writes again`);
    expect(outsideWindowMessage(late, undefined)).toBe(`${head}; send an approved template instead`);
  });
});
