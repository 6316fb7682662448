/**
 * Writes docs/schema/*.json (JSON Schema of every bus payload) and docs/openapi.json (the /v1 API),
 * both generated from the zod definitions. Tests fail when the committed files are out of date.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { schemaDocuments } from '../src/core/schema-export.js';
import { openApiDocument } from '../src/api/openapi.js';

const dir = new URL('../docs/schema/', import.meta.url).pathname;
mkdirSync(dir, { recursive: true });
for (const [name, doc] of Object.entries(schemaDocuments())) {
  writeFileSync(`${dir}${name}.json`, `${JSON.stringify(doc, null, 2)}\n`);
}
writeFileSync(new URL('../docs/openapi.json', import.meta.url), `${JSON.stringify(openApiDocument(), null, 2)}\n`);
