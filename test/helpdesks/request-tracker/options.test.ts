/** The request-tracker entry in the strict config: defaults, refusals naming the key, secrets kept out of logs. */
import { describe, expect, it } from 'vitest';
import { loadAll } from '../../../src/cli.js';
import { writeConfig } from '../../helpers/process.js';
import { requestorName } from '../../../src/helpdesks/request-tracker/adapter.js';

const rt = { type: 'request-tracker', id: 'rt', url: 'https://rt.example.com', user: 'omnigate', token: '${RT_TOKEN}' };
const env = { RT_TOKEN: '1-14-0123456789abcdef0123456789' };

describe('request-tracker config', () => {
  it('fills the defaults and merges status overrides', async () => {
    const { loaded, helpdeskFactories } = await loadAll(writeConfig({ helpdesks: [{ ...rt, statusToRt: { pending: 'open' } }] }), env);
    expect(helpdeskFactories.has('request-tracker')).toBe(true);
    expect(loaded.helpdesks[0]!.options).toMatchObject({
      queue: 'General', externalIdField: 'External ID', externalIdPrefix: '', requestorPrefix: 'omnigate.', pollInterval: 5000, pollBatch: 100, startFrom: 'now',
      statusToRt: { pending: 'open' },
    });
  });

  it('refuses an unknown key with a suggestion, credentials in the URL, and neither token nor password', async () => {
    await expect(loadAll(writeConfig({ helpdesks: [{ ...rt, queus: [] }] }), env)).rejects.toThrow(/helpdesks\[0\]\.queus: unknown key "queus"; did you mean/);
    await expect(loadAll(writeConfig({ helpdesks: [{ ...rt, url: 'https://root:pw@rt.example.com' }] }), env)).rejects.toThrow(/helpdesks\[0\]\.url/);
    const { token: _drop, ...noAuth } = rt;
    await expect(loadAll(writeConfig({ helpdesks: [noAuth] }), env)).rejects.toThrow(/helpdesks\[0\]\.token/);
    await expect(loadAll(writeConfig({ helpdesks: [{ ...rt, requestorPrefix: 'omnigate:' }] }), env)).rejects.toThrow(/helpdesks\[0\]\.requestorPrefix/);
    await expect(loadAll(writeConfig({ helpdesks: [{ ...rt, statusFromRt: { stalled: 'waiting' } }] }), env)).rejects.toThrow(/helpdesks\[0\]\.statusFromRt/);
  });
});

describe('requestor names', () => {
  it('keep RT from reading a principal type or an email address, and keep contacts apart', () => {
    expect(requestorName('omnigate.', 'telegram', 'bot1', '7001')).toBe('omnigate.telegram.bot1.7001');
    const a = requestorName('omnigate.', 'email', 'inbox', 'alice@example.com');
    const b = requestorName('omnigate.', 'email', 'inbox', 'alice_example.com');
    expect(a).not.toMatch(/[:@]/);
    expect(a).not.toBe(b);
    expect(requestorName('omnigate.', 'whatsapp', 'main', 'x'.repeat(400)).length).toBeLessThanOrEqual(200);
  });
});
