/**
 * How many replies a gateway's connector keeps send progress for (parts delivered, rate-limit
 * waits) across the runner's attempts: read from the connector's private map, so a test can show
 * that a reply's entry goes once its outcome is final (contract.ts `settled`).
 */
import type { TestGateway } from './gateway.js';

type ProgressMap = Map<string, unknown>;

export function progressHeld(gw: TestGateway, index = 0): number {
  const hosted = (gw.gateway.connectors as unknown as { hosted: Array<{ connector: unknown }> }).hosted[index];
  if (!hosted) throw new Error(`the gateway has no connector #${index}`);
  // Telegram and WhatsApp Cloud keep it in their sender, WhatsApp Web and Slack in the connector.
  const c = hosted.connector as { progress?: ProgressMap; sender?: { progress?: ProgressMap } };
  const map = c.sender?.progress ?? c.progress;
  if (!map) throw new Error('this connector keeps no progress map');
  return map.size;
}
