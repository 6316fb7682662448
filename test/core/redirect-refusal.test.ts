/**
 * A redirect a callback, a platform or a helpdesk answers with is refused naming where it points,
 * without what a Location may carry: the reason is stored on the ticket, in dead letters and in
 * webhook events (it carried `https://user:PASS@…/sso?ticket=SECRET` into all three).
 */
import { describe, expect, it } from 'vitest';
import { redirectRefusal } from '../../src/core/http.js';

const redirect = (status: number, location?: string, url = 'https://crm.example.ru/hooks/SECRET-PATH') => {
  const res = new Response(null, { status, headers: location === undefined ? {} : { location } });
  Object.defineProperty(res, 'url', { value: url });
  return res;
};

describe('redirectRefusal', () => {
  it('names another host by scheme, host and port only: no password, path or query', () => {
    const said = redirectRefusal(redirect(302, 'https://user:LOCPASS_SECRET@login.example.ru/sso/hook-TOKEN?ticket=LOCTICKET_SECRET#x'))!;
    expect(said).toBe('answered 302, a redirect to https://login.example.ru:443 (path, query and credentials not shown): not followed (it would drop the body or send it to another address); set the URL to the final address');
    expect(said).not.toMatch(/SECRET|TOKEN|user/);
    expect(redirectRefusal(redirect(308, 'http://[::1]:8080/x'))).toContain('a redirect to http://[::1]:8080 (');
    // Protocol-relative: another host all the same.
    expect(redirectRefusal(redirect(301, '//evil.example/x?t=1'))).toContain('a redirect to https://evil.example:443 (path, query and credentials not shown)');
  });

  it("on the same host names no path: a hook URL's path may be its secret", () => {
    const slash = redirectRefusal(redirect(301, '/hooks/SECRET-PATH/'))!;
    expect(slash).toContain('a redirect to the same path with its trailing slash added or taken off');
    expect(slash).not.toContain('SECRET');
    const other = redirectRefusal(redirect(301, '/landing;jsessionid=SECRET?token=abc'))!;
    expect(other).toContain('a redirect to another path on the same host (not shown: a path may hold a token)');
    expect(other).not.toContain('SECRET');
    expect(redirectRefusal(redirect(301, 'http://[bad'))).toContain('a redirect to an address that is not a URL');
  });

  it('says a redirect without a Location is one; nothing else is taken for a redirect', () => {
    expect(redirectRefusal(redirect(303))).toBe('answered 303, a redirect: not followed (it would drop the body or send it to another address); set the URL to the final address');
    expect(redirectRefusal(redirect(200))).toBeUndefined();
    expect(redirectRefusal(redirect(404))).toBeUndefined();
  });
});
