/**
 * The Slack SDK's logger interface on top of ours. Its debug output carries whole payloads
 * (customer messages), so debug is dropped; the disconnect races our reconnect loop handles are
 * logged at debug, everything else the SDK reports as a problem at warn.
 */
import { LogLevel, type Logger as SlackLogger } from '@slack/web-api';
import type { Logger } from '../../core/logger.js';

const EXPECTED = /no active connection|is not connected|WebSocket error|Failed to retrieve a new WSS URL/;

export function slackLibraryLogger(log: Logger): SlackLogger {
  const problem = (...msg: unknown[]) => {
    const text = msg.map((m) => (m instanceof Error ? m.message : String(m))).join(' ');
    if (EXPECTED.test(text)) log.debug({ sdk: text }, 'Slack SDK');
    else log.warn({ sdk: text }, 'Slack SDK');
  };
  return {
    debug: () => {},
    info: () => {},
    warn: problem,
    error: problem,
    setLevel: () => {},
    getLevel: () => LogLevel.WARN,
    setName: () => {},
  };
}
