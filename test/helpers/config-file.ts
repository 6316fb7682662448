/** A config written to a file of its own and loaded as `start` loads it; or the refusal it gets. */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { ConfigError, loadConfig } from '../../src/core/config.js';
import { testTempDir } from './temp-dirs.js';

export function loadConfigOf(config: Record<string, unknown>) {
  const file = join(testTempDir('omnigate-cfg-'), 'omnigate.yaml');
  writeFileSync(file, stringify(config));
  return loadConfig(file, {}).config;
}

export function refusalOf(config: Record<string, unknown>): ConfigError {
  try {
    loadConfigOf(config);
  } catch (err) {
    if (err instanceof ConfigError) return err;
    throw err;
  }
  throw new Error('accepted');
}
