// Copies the console's static files (src/console/assets) next to the compiled server module
// (dist/console/assets), where src/console/static.ts reads them. Part of `npm run build`.
import { cpSync, rmSync } from 'node:fs';

const from = new URL('../src/console/assets/', import.meta.url);
const to = new URL('../dist/console/assets/', import.meta.url);
rmSync(to, { recursive: true, force: true });
cpSync(from, to, { recursive: true });
