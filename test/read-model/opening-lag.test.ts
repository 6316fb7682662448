/**
 * The read model's lag while its database is still opening (a slow PGlite initdb, a PostgreSQL
 * that does not answer yet). An outside trial saw `/readyz` say `lag: 0` then: ops took it for
 * caught up while lists answered 503 "still opening". Until the checkpoint has been read from
 * the database no lag is known, and neither /readyz nor the gauge may claim one.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Bus } from '../../src/core/bus.js';
import { createLogger } from '../../src/core/logger.js';
import { registry } from '../../src/core/metrics.js';
import { Supervisor } from '../../src/core/supervisor.js';
import { readiness } from '../../src/probes.js';
import { ReadModel } from '../../src/read-model/read-model.js';
import { silentServer, type SilentServer } from '../helpers/silent-server.js';

const log = createLogger({ level: 'silent' });
/** A PostgreSQL stand-in that takes the connection and never answers: the open stays in progress. */
let silent: SilentServer;
beforeAll(async () => {
  silent = await silentServer();
});
afterAll(async () => silent?.close());

describe('the read model while its database is opening', () => {
  it('states no lag in /readyz or in omnigate_read_model_lag, rather than 0', async () => {
    const supervisor = new Supervisor(log);
    const url = `postgres://127.0.0.1:${silent.port}/omnigate`;
    // Not started: nothing here may touch the bus before the database is open.
    const rm = new ReadModel({} as Bus, { url, dataDir: '', connectTimeoutMs: 60_000 }, log, supervisor);
    const opening = rm.database().catch(() => undefined);
    try {
      await expect.poll(() => silent.sockets.length).toBeGreaterThan(0);
      const probe = await readiness({ supervisor, connectors: () => [], readModel: () => rm.sample() });
      const shown = JSON.parse(JSON.stringify(probe.checks.readModel)) as Record<string, unknown>;
      expect(shown).toMatchObject({ database: 'opening', applying: false, lag: null, checkpoint: null, logLastSeq: null });
      const exposed = /^omnigate_read_model_lag (\S+)$/m.exec(await registry.metrics());
      // prom-client writes NaN as "Nan"; Prometheus reads either spelling as NaN.
      expect(exposed?.[1]).toMatch(/^nan$/i);
    } finally {
      await rm.stop();
      await opening;
    }
  });
});
