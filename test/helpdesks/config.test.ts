/** `helpdesks:` in the strict config: each adapter's own schema decides its keys, with a "did you mean". */
import { describe, expect, it } from 'vitest';
import { loadAll } from '../../src/cli.js';
import { writeConfig } from '../helpers/process.js';

const zammad = { type: 'zammad', id: 'support', url: 'https://zammad.example.com', token: '${ZAMMAD_TOKEN}' };
const env = { ZAMMAD_TOKEN: 'zammad-token-0123456789abcdef' };

describe('helpdesks config', () => {
  it('validates an entry with the adapter\'s schema and fills its defaults', async () => {
    const { loaded, helpdeskFactories } = await loadAll(writeConfig({ helpdesks: [{ ...zammad, statusFromZammad: { solved: 'resolved' } }] }), env);
    expect(helpdeskFactories.has('zammad')).toBe(true);
    const [h] = loaded.helpdesks;
    expect(h!.entry).toMatchObject({ id: 'support', retryFor: 86_400_000, redeliverAfter: 30_000 });
    expect(h!.options).toMatchObject({ group: 'Users', ticketField: 'omnigate_ticket', articleType: 'web', poll: { interval: 60_000 } });
    expect((h!.options as { statusFromZammad: Record<string, string> }).statusFromZammad).toMatchObject({ solved: 'resolved', closed: 'closed', open: 'open' });
  });

  it('refuses an unknown key with a suggestion, naming the entry', async () => {
    await expect(loadAll(writeConfig({ helpdesks: [{ ...zammad, tickeField: 'x' }] }), env)).rejects.toThrow(/helpdesks\[0\]\.tickeField.*ticketField/);
  });

  it('refuses an unknown type, listing the known ones', async () => {
    await expect(loadAll(writeConfig({ helpdesks: [{ type: 'otrs', id: 'x' }] }), env)).rejects.toThrow(/helpdesks\[0\]\.type: unknown helpdesk type "otrs"; expected one of: .*zammad/);
  });

  it('refuses an API path in the base URL and a token with letters outside ASCII, naming the key and not the token', async () => {
    await expect(loadAll(writeConfig({ helpdesks: [{ ...zammad, url: 'https://zammad.example.com/api/v1' }] }), env)).rejects.toThrow(/helpdesks\[0\]\.url: the base URL of Zammad, without \/api\/v1/);
    const rt = { type: 'request-tracker', id: 'rt', url: 'https://rt.example.com/REST/2.0/', user: 'omnigate', token: '${RT_TOKEN}' };
    await expect(loadAll(writeConfig({ helpdesks: [rt] }), { RT_TOKEN: 'rt-token-0123' })).rejects.toThrow(/helpdesks\[0\]\.url: RT's base URL, without \/REST\/2\.0/);
    const lookalike = 'zammad-token-0123456789abcdeН'; // a Cyrillic Н at the end
    const err = await loadAll(writeConfig({ helpdesks: [zammad] }), { ZAMMAD_TOKEN: lookalike }).then(() => undefined, (e: Error) => e);
    expect(err?.message).toMatch(/helpdesks\[0\]\.token: printable ASCII only/);
    expect(err?.message).not.toContain(lookalike);
  });

  it('refuses an article type Zammad would send out itself', async () => {
    await expect(loadAll(writeConfig({ helpdesks: [{ ...zammad, articleType: 'email' }] }), env)).rejects.toThrow(/helpdesks\[0\]\.articleType/);
  });

  it('refuses two helpdesks with one id', async () => {
    await expect(loadAll(writeConfig({ helpdesks: [zammad, zammad] }), env)).rejects.toThrow(/helpdesks\[1\]\.id: duplicate helpdesk id "support"/);
  });
});
