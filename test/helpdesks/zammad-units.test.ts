/** Zammad: logins for chat customers (ASCII, one per customer whatever the alphabet of their id), and agent HTML as text. */
import { describe, expect, it } from 'vitest';
import { loginFor } from '../../src/helpdesks/zammad/adapter.js';

describe('Zammad customer logins', () => {
  it('keeps ASCII ids as they were and gives Cyrillic ids a login of their own', () => {
    expect(loginFor('telegram', 'bot1', '9001')).toBe('telegram-bot1-9001');
    const ivan = loginFor('webhook', 'site', 'иван');
    const petr = loginFor('webhook', 'site', 'петр');
    expect(ivan).not.toBe(petr); // both were "webhook-site-____": one Zammad user for two customers
    expect(ivan).toMatch(/^webhook-site-____-[0-9a-f]{12}$/);
    expect(loginFor('webhook', 'site', 'хакер')).not.toBe(loginFor('webhook', 'site', 'ольга'));
    expect(loginFor('webhook', 'site', 'иван')).toBe(ivan); // stable: the same customer finds their user again
  });
});

describe('Zammad agent HTML as text', () => {
  it('drops what a browser never shows (script, style, comments)', async () => {
    const { htmlToText } = await import('../../src/helpdesks/zammad/intake.js');
    expect(htmlToText('<p>Счёт во вложении</p><script>alert(1)</script><style>p{}</style><!-- черновик -->')).toBe('Счёт во вложении');
  });
});

describe('Zammad calls and the gateway stop', () => {
  it('a call in flight ends when the gateway stops, not after its timeout (a slow Zammad held the stop past its budget)', async () => {
    const { createServer } = await import('node:http');
    const { ZammadClient } = await import('../../src/helpdesks/zammad/client.js');
    const server = createServer(() => {}); // never answers
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
    const stop = new AbortController();
    const client = new ZammadClient(`http://127.0.0.1:${(server.address() as { port: number }).port}`, 'token-0123456789', 60_000, stop.signal);
    const started = performance.now();
    const call = client.me();
    setTimeout(() => stop.abort(), 200);
    await expect(call).rejects.toThrow(/Zammad unreachable/);
    expect(performance.now() - started).toBeLessThan(10_000);
    server.closeAllConnections();
    server.close();
  });
});
