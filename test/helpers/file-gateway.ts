/**
 * One gateway for a whole test file. Apart from gateway.ts, which the benchmarks import outside
 * vitest: this one registers vitest hooks.
 */
import { afterAll, beforeAll } from 'vitest';
import { startGateway, type TestGateway } from './gateway.js';

/** Started (with its own throwaway nats-server) before the file's tests, handed to `use`, stopped after them. */
export function gatewayPerFile(config: Record<string, unknown>, use: (gw: TestGateway) => void): void {
  let gw: TestGateway | undefined;
  beforeAll(async () => {
    gw = await startGateway(config);
    use(gw);
  });
  afterAll(async () => {
    await gw?.stop();
  });
}
