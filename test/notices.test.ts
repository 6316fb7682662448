/** THIRD_PARTY_NOTICES.md is generated from package-lock.json; a dependency change must regenerate it. */
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { expect, it } from 'vitest';

const root = fileURLToPath(new URL('..', import.meta.url));

it('THIRD_PARTY_NOTICES.md matches the lockfile (run `npm run notices` after changing dependencies)', () => {
  const r = spawnSync(process.execPath, ['scripts/third-party-notices.mjs', '--check'], { cwd: root, encoding: 'utf8' });
  expect(r.stderr).toBe('');
  expect(r.status).toBe(0);
});
