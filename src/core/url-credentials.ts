/**
 * URLs with a user name or password in them. undici (fetch) refuses such URLs outright, so a
 * configured `https://user:pass@host/hook` can never work — and every failure log line would print
 * the password. Config refuses them (credentials belong in a header or a separate secret key), and
 * the logger masks userinfo in any text it writes, whatever its source (a platform's error
 * message, a URL a customer sent).
 */

/** A PostgreSQL connection string's query parameters that carry a secret (pg reads them as the password). */
const PG_SECRET_PARAM = /[?&](password|sslpassword)=/i;

/** scheme://userinfo@ — userinfo may not contain "/", "@" or whitespace. */
const USERINFO = /\b([a-z][a-z0-9+.-]*:\/\/)[^\s/@?#]+@/gi;

export function maskUrlCredentials(text: string): string {
  if (!text.includes('@') || !text.includes('://')) return text;
  return text.replace(USERINFO, '$1[REDACTED]@');
}

export function hasUrlCredentials(text: string): boolean {
  USERINFO.lastIndex = 0;
  const found = USERINFO.test(text);
  USERINFO.lastIndex = 0;
  return found;
}

export interface UrlCredentialProblem {
  /** Dotted key path in the config, e.g. `webhooks[0].url`. */
  path: string;
  message: string;
}

/** Every string in a config tree that carries URL credentials, with the advice for its key. */
export function findUrlCredentials(value: unknown, path = ''): UrlCredentialProblem[] {
  if (typeof value === 'string') {
    if (path === 'database.url' && PG_SECRET_PARAM.test(value)) {
      return [{ path, message: 'URL carries a password in its query (password=, sslpassword=), which logs would expose: put it in database.password (as ${VAR}) instead' }];
    }
    if (!hasUrlCredentials(value)) return [];
    const advice = path === 'nats.url'
      ? 'put them in nats.user / nats.pass (or nats.token) instead'
      : path === 'database.url'
      ? 'put them in database.user / database.password (the password as ${VAR}) instead'
      : 'remove them and send the credential in a header (the webhook secret signs every request), or use the key the connector provides for it';
    const why = path === 'nats.url' || path === 'database.url' ? 'which logs would expose' : 'which HTTP clients refuse and logs would expose';
    return [{ path, message: `URL contains a user name or password, ${why}: ${advice}` }];
  }
  if (Array.isArray(value)) return value.flatMap((v, i) => findUrlCredentials(v, `${path}[${i}]`));
  if (value && typeof value === 'object') {
    return Object.entries(value).flatMap(([k, v]) => findUrlCredentials(v, path ? `${path}.${k}` : k));
  }
  return [];
}
