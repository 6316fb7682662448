/**
 * Bearer-token auth for the /v1 API and authenticated connector routes. Tokens come from config
 * (`api.tokens`), are compared in constant time, and are never logged.
 */
import { safeEqual } from '../core/signature.js';
import type { ApiError } from './errors.js';

export interface ApiToken {
  name: string;
  token: string;
  readOnly: boolean;
  /** May erase a person's data; an ordinary token may not. */
  admin?: boolean;
}

export type AuthResult = { ok: true; name: string; readOnly: boolean; admin: boolean } | { ok: false; error: ApiError };

/** Methods a read-only token may use. */
const READ_METHODS = new Set(['GET', 'HEAD', 'OPTIONS']);

export class TokenAuth {
  constructor(private readonly tokens: ApiToken[]) {}

  check(header: string | string[] | undefined): AuthResult {
    const value = Array.isArray(header) ? header[0] : header;
    const match = /^Bearer\s+(\S+)\s*$/i.exec(value ?? '');
    if (!match) return { ok: false, error: { code: 'unauthorized', message: 'missing bearer token (Authorization: Bearer <token>)' } };
    let found: ApiToken | undefined;
    // Compare against every token so the time taken does not reveal which one matched.
    for (const t of this.tokens) if (safeEqual(match[1]!, t.token)) found = t;
    if (!found) return { ok: false, error: { code: 'unauthorized', message: 'invalid bearer token' } };
    return { ok: true, name: found.name, readOnly: found.readOnly, admin: found.admin === true };
  }

  /** Auth for one request: undefined when allowed, else the error to answer with (401 or 403). */
  authorize(header: string | string[] | undefined, method: string): ApiError | undefined {
    const result = this.check(header);
    if (!result.ok) return result.error;
    if (result.readOnly && !READ_METHODS.has(method.toUpperCase())) {
      return { code: 'forbidden', message: `token "${result.name}" is read-only` };
    }
    return undefined;
  }

  /** Auth for an admin-only route: the token's name when allowed, else the error (401 or 403). */
  authorizeAdmin(header: string | string[] | undefined): { name: string } | { error: ApiError } {
    const result = this.check(header);
    if (!result.ok) return { error: result.error };
    if (!result.admin) return { error: { code: 'forbidden', message: `token "${result.name}" is not an admin token (api.tokens[].admin: true)` } };
    return { name: result.name };
  }
}
