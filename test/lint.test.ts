/**
 * `npm run lint` is part of `npm test`; this proves its rules fire. The fixtures under
 * test/fixtures/lint mirror the src/ layout (so the per-directory boundary rules apply) and are
 * bad on purpose; the real eslint.config.js lints them with test/fixtures/lint as its base.
 */
import { ESLint } from 'eslint';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const root = fileURLToPath(new URL('..', import.meta.url));
const fixtures = fileURLToPath(new URL('./fixtures/lint/', import.meta.url));

describe('lint', () => {
  it('fails on floating promises and on imports across the architecture boundaries', async () => {
    // ignore: false because the real config ignores these fixtures for `npm run lint`.
    const eslint = new ESLint({ cwd: fixtures, overrideConfigFile: `${root}eslint.config.js`, ignore: false });
    const results = await eslint.lintFiles(['src']);
    const found = results.flatMap((r) =>
      r.messages.map((m) => `${r.filePath.slice(fixtures.length)}:${m.line} ${m.ruleId ?? m.message}`),
    );
    expect(found.sort()).toEqual([
      'src/connectors/slack/imports-telegram.ts:2 no-restricted-imports', // line 3 (core) is allowed
      'src/core/imports-router.ts:2 no-restricted-imports',
      'src/helpdesks/imports-router.ts:2 no-restricted-imports', // line 3 (core) is allowed
      'src/helpdesks/zammad/imports-host.ts:2 no-restricted-imports',
      'src/helpdesks/zammad/imports-host.ts:3 no-restricted-imports', // line 4 (the contract) is allowed
      'src/reports/imports-router.ts:2 no-restricted-imports', // line 3 (business hours) is allowed
      'src/router/floating.ts:7 @typescript-eslint/no-floating-promises',
      'src/router/floating.ts:8 @typescript-eslint/no-floating-promises', // `void` without a reason
      'src/router/imports-connector.ts:2 no-restricted-imports',
    ]);
    expect(results.every((r) => r.fatalErrorCount === 0)).toBe(true);
  }, 180_000);
});
