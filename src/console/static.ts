/**
 * Serves the console's static files under /console/. They hold no data (everything comes from the
 * API with the token the operator types in), so they are served without a token. Every URL in
 * them is relative, so the console works behind a reverse proxy that mounts the gateway under a
 * path prefix (/ops/omnigate/console/ → /console/).
 *
 * The files are copied next to this module by `npm run build` (scripts/copy-assets.mjs), and
 * read from src/console/assets when running from source (tests with tsx).
 */
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import type { FastifyInstance } from 'fastify';

const TYPES: Record<string, string> = {
  html: 'text/html; charset=utf-8',
  js: 'text/javascript; charset=utf-8',
  css: 'text/css; charset=utf-8',
  svg: 'image/svg+xml',
  json: 'application/json; charset=utf-8',
};

/** Strict: the page runs only its own script and style, and reaches only its own origin. */
const CSP = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' blob: data:; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

function loadAssets(): Map<string, { body: Buffer; type: string }> {
  const dir = fileURLToPath(new URL('./assets/', import.meta.url));
  const files = new Map<string, { body: Buffer; type: string }>();
  if (!existsSync(dir)) return files;
  for (const name of readdirSync(dir)) {
    const type = TYPES[name.split('.').pop() ?? ''];
    if (type) files.set(name, { body: readFileSync(`${dir}${name}`), type });
  }
  return files;
}

export function registerConsoleAssets(app: FastifyInstance): void {
  const files = loadAssets();
  // Relative: /prefix/console → /prefix/console/ behind a proxy too.
  app.get('/console', async (_req, reply) => reply.code(308).header('location', 'console/').send());
  app.get<{ Params: { file?: string } }>('/console/:file', async (req, reply) => {
    const name = req.params.file || 'index.html';
    const f = files.get(name);
    if (!f) return reply.code(404).header('content-type', 'text/plain; charset=utf-8').send(files.size ? 'not found' : 'console assets missing: run npm run build');
    return reply
      .header('content-type', f.type)
      .header('cache-control', name === 'index.html' ? 'no-cache' : 'public, max-age=300')
      .header('content-security-policy', CSP)
      .header('x-content-type-options', 'nosniff')
      .header('referrer-policy', 'no-referrer')
      .send(f.body);
  });
  app.get('/console/', async (_req, reply) => {
    const f = files.get('index.html');
    if (!f) return reply.code(404).header('content-type', 'text/plain; charset=utf-8').send('console assets missing: run npm run build');
    return reply.header('content-type', f.type).header('cache-control', 'no-cache').header('content-security-policy', CSP).header('x-content-type-options', 'nosniff').header('referrer-policy', 'no-referrer').send(f.body);
  });
}
