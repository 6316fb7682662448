import { defineConfig } from 'vitest/config';

// Every test file starts its own throwaway nats-server (and Dovecot/SMTP where needed), so
// files are isolated; two workers match the 2-core CI machines.
export default defineConfig({
  test: {
    include: ['test/**/*.test.ts', 'src/**/*.test.ts'],
    pool: 'forks',
    maxWorkers: 2,
    // Tests that sweep or route through real servers took 20 s alone and over 60 s in the full
    // suite on 2 cores: a bound for hangs, not a speed check.
    testTimeout: 120_000,
    // Set-up and tear-down start and stop real servers (nats-server, PGlite, PostgreSQL databases,
    // RT): on a loaded 2-core machine a gateway's stop has been seen to take over a minute.
    hookTimeout: 180_000,
    reporters: ['default', './test/helpers/summary-reporter.ts'],
    // Removes each file's temporary directories after it (test/helpers/temp-dirs.ts).
    setupFiles: ['./test/setup.ts'],
  },
});
