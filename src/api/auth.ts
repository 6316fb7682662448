/**
 * Bearer-token auth for the /v1 API and authenticated connector routes. Tokens come from config
 * (`api.tokens`), are compared in constant time, and are never logged.
 */
import { safeEqual } from '../core/signature.js';

export interface ApiToken {
  name: string;
  token: string;
  readOnly: boolean;
}

export type AuthResult = { ok: true; name: string; readOnly: boolean } | { ok: false; status: 401; code: 'unauthorized'; message: string };

export class TokenAuth {
  constructor(private readonly tokens: ApiToken[]) {}

  check(header: string | string[] | undefined): AuthResult {
    const value = Array.isArray(header) ? header[0] : header;
    const match = /^Bearer\s+(\S+)\s*$/i.exec(value ?? '');
    if (!match) return { ok: false, status: 401, code: 'unauthorized', message: 'missing bearer token (Authorization: Bearer <token>)' };
    let found: ApiToken | undefined;
    // Compare against every token so the time taken does not reveal which prefix matched.
    for (const t of this.tokens) if (safeEqual(match[1]!, t.token)) found = t;
    if (!found) return { ok: false, status: 401, code: 'unauthorized', message: 'invalid bearer token' };
    return { ok: true, name: found.name, readOnly: found.readOnly };
  }
}
