/**
 * Runs in every test file. Registered before the file's own hooks, so with vitest's default
 * stacked after-hooks this runs after them, when the file has stopped what it started.
 */
import { afterAll } from 'vitest';
import { removeTestTempDirs } from './helpers/temp-dirs.js';

afterAll(() => removeTestTempDirs());
