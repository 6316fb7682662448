/**
 * Writes docs/schema/*.json: JSON Schema generated from the zod definitions in src/core/schema.ts,
 * for consumers in other languages. test/core/schema.test.ts fails when they are out of date.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { schemaDocuments } from '../src/core/schema-export.js';

const dir = new URL('../docs/schema/', import.meta.url).pathname;
mkdirSync(dir, { recursive: true });
for (const [name, doc] of Object.entries(schemaDocuments())) {
  writeFileSync(`${dir}${name}.json`, `${JSON.stringify(doc, null, 2)}\n`);
}
