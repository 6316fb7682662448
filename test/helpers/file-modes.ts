import { readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';

/** Paths under `dir` (itself included) that group or others may use, with their modes: what the data directory must not hold. */
export function sharedPaths(dir: string): string[] {
  const found: string[] = [];
  const walk = (p: string) => {
    const s = statSync(p);
    if (s.mode & 0o077) found.push(`${p} ${(s.mode & 0o777).toString(8)}`);
    if (s.isDirectory()) for (const name of readdirSync(p)) walk(join(p, name));
  };
  walk(dir);
  return found;
}
