/**
 * The signature checks docs/api.md gives webhook receivers to copy (TypeScript and openssl) accept
 * what the gateway signs and refuse a changed body: a receiver that copied a stale snippet would
 * refuse every event, or worse, accept forged ones.
 */
import { execFileSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { sign } from '../../src/core/signature.js';
import { testTempDir } from '../helpers/temp-dirs.js';
import { blocks } from './doc-blocks.js';

const SECRET = 'docs-example-webhook-secret-0123456789';
const BODY = Buffer.from('{"v":1,"type":"ticket.message","ticketId":"T-1042","text":"Здравствуйте!"}');
const section = blocks('docs/api.md').filter((b) => b.text.includes('v1') && /HMAC|createHmac|openssl dgst/.test(b.text));

describe('docs/api.md signature snippets', () => {
  it('TypeScript: verifyOmnigate accepts the gateway\'s signature and refuses a changed body', async () => {
    const ts = section.find((b) => b.lang === 'ts');
    expect(ts, 'the TypeScript snippet').toBeDefined();
    const file = join(testTempDir('omnigate-doc-verify-'), 'verify.ts');
    writeFileSync(file, ts!.text);
    const { verifyOmnigate } = (await import(file)) as { verifyOmnigate: (raw: Buffer, header: string, secret: string) => boolean };
    const header = sign(SECRET, BODY);
    expect(verifyOmnigate(BODY, header, SECRET)).toBe(true);
    expect(verifyOmnigate(Buffer.concat([BODY, Buffer.from(' ')]), header, SECRET)).toBe(false);
    expect(verifyOmnigate(BODY, sign(SECRET, BODY, Math.floor(Date.now() / 1000) - 600), SECRET)).toBe(false);
  });

  it('shell: the openssl lines print "valid" for the gateway\'s signature and "INVALID" for a changed body', () => {
    const sh = section.find((b) => b.lang === 'sh' && b.text.includes('openssl'));
    expect(sh, 'the shell snippet').toBeDefined();
    const dir = testTempDir('omnigate-doc-verify-');
    const run = (body: Buffer) => {
      writeFileSync(join(dir, 'body.json'), body);
      return execFileSync('bash', ['-c', sh!.text], { cwd: dir, env: { PATH: process.env.PATH, SIG: sign(SECRET, BODY), OMNIGATE_WEBHOOK_SECRET: SECRET }, encoding: 'utf8' }).trim();
    };
    expect(run(BODY)).toBe('valid');
    expect(run(Buffer.concat([BODY, Buffer.from(' ')]))).toBe('INVALID');
  });
});
