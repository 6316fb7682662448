// Copies what tsc does not emit next to the compiled modules that read it: the console's static
// files (src/console/assets → dist/console/assets, read by src/console/static.ts) and the PGlite
// worker (plain JavaScript, started by src/read-model/database.ts). Part of `npm run build`.
import { cpSync, rmSync } from 'node:fs';

const from = new URL('../src/console/assets/', import.meta.url);
const to = new URL('../dist/console/assets/', import.meta.url);
rmSync(to, { recursive: true, force: true });
cpSync(from, to, { recursive: true });
cpSync(new URL('../src/read-model/pglite-worker.mjs', import.meta.url), new URL('../dist/read-model/pglite-worker.mjs', import.meta.url));
