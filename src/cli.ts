#!/usr/bin/env node
/**
 * omnigate start         run the gateway (embedded nats-server when nats.url is empty)
 * omnigate check-config  validate the configuration and exit
 * Config file: --config FILE, else $OMNIGATE_CONFIG, else ./config/omnigate.yaml if present,
 * else built-in defaults.
 */
import { existsSync } from 'node:fs';
import { parseArgs } from 'node:util';
import type { z } from 'zod';
import { ConfigError, loadConfig, loadConfigSections, loadNatsSection, type ConnectorValidator, type LoadedConfig } from './core/config.js';
import { ConnectorEntry, HelpdeskEntry } from './core/config-schema.js';
import { unknownKeys } from './core/strict-keys.js';
import { checkReferences, configWarnings, describeConfig } from './config-check.js';
import { createLogger } from './core/logger.js';
import { setPersonalDataInLogs } from './core/log-personal.js';
import { errorMessage } from './core/errors.js';
import { NatsServerMissingError } from './core/embedded-nats.js';
import { DataDirLockedError } from './core/data-dir-lock.js';
import { PortInUseError } from './core/port-check.js';
import { NatsAccessError } from './core/nats-access.js';
import { PartitionCountError, UnsafeServerError } from './core/bus-provision.js';
import { ConnectorUnavailableError, connectorTypes, loadFactories } from './connectors/registry.js';
import { helpdeskTypes, loadHelpdeskFactories } from './helpdesks/registry.js';
import type { HelpdeskFactory } from './helpdesks/contract.js';
import type { ConnectorFactory } from './connectors/contract.js';
import { Gateway } from './app.js';
import { installCrashPolicy } from './crash-policy.js';
import { restrictUmask } from './core/private-files.js';

const octal = (mode: number) => `0${mode.toString(8).padStart(3, '0')}`;

const USAGE = `usage: omnigate start [--config FILE]
       omnigate check-config [--config FILE]
       omnigate dlq [--source SOURCE] [--since ISO-TIME] [--limit N] [--replay] [--config FILE]`;

const OPTIONS = {
  config: { type: 'string' },
  source: { type: 'string' },
  since: { type: 'string' },
  limit: { type: 'string' },
  replay: { type: 'boolean' },
  help: { type: 'boolean', short: 'h' },
} as const;
const DLQ_ONLY = ['source', 'since', 'limit', 'replay'] as const;

export interface CommandLine {
  command: string | undefined;
  /** --help / -h (or `omnigate help`): the usage on stdout, exit 0. */
  help: boolean;
  config?: string;
  dlq: { source?: string; since?: string; limit: number; replay: boolean };
}

/** util.parseArgs, strict: an unknown flag, a flag without its value or a bad --limit throws (usage error). */
export function parseCommandLine(argv: string[]): CommandLine {
  const { positionals, values } = parseArgs({ args: argv, options: OPTIONS, allowPositionals: true, strict: true });
  const command = positionals[0];
  if (positionals.length > 1) throw new Error(`unexpected argument '${positionals[1]}'`);
  if (command !== 'dlq') {
    const stray = DLQ_ONLY.find((k) => values[k] !== undefined);
    if (stray) throw new Error(`--${stray} applies to the dlq command only`);
  }
  if (values.since !== undefined && Number.isNaN(Date.parse(values.since))) throw new Error(`--since must be an ISO time, got '${values.since}'`);
  const limit = values.limit === undefined ? 1000 : Number(values.limit);
  if (!Number.isInteger(limit) || limit <= 0) throw new Error(`--limit must be a positive integer, got '${values.limit}'`);
  return {
    command,
    help: values.help === true || command === 'help',
    config: values.config,
    dlq: { source: values.source, since: values.since, limit, replay: values.replay ?? false },
  };
}

export function configPath(flag: string | undefined, env: NodeJS.ProcessEnv): string | undefined {
  if (flag !== undefined) return flag;
  if (env.OMNIGATE_CONFIG) return env.OMNIGATE_CONFIG;
  return existsSync('config/omnigate.yaml') ? 'config/omnigate.yaml' : undefined;
}

/**
 * A connector's or helpdesk's own options against its module's schema: unknown keys (with a
 * suggestion) and the schema's findings together, so one run reports both.
 */
function checkOptions(schema: z.ZodType, options: Record<string, unknown>, commonKeys: string[]): ReturnType<ConnectorValidator> {
  const unknown = unknownKeys(schema, options, commonKeys);
  const r = schema.safeParse(options);
  if (unknown.length) return { ok: false, unknownKeys: unknown, error: r.success ? undefined : r.error };
  return r.success ? { ok: true, value: r.data } : { ok: false, error: r.error };
}

/** Two passes: the core keys first, then each enabled connector against its own schema. */
export async function loadAll(
  file: string | undefined,
  env: NodeJS.ProcessEnv,
): Promise<{ loaded: LoadedConfig; factories: Map<string, ConnectorFactory<any>>; helpdeskFactories: Map<string, HelpdeskFactory<any>> }> {
  // With the core sections wrong, every known connector and helpdesk module is loaded, so the
  // same run reports the entries' own problems as well (it reported the core's alone).
  let sections: { connectors: Array<{ type: string }>; helpdesks: Array<{ type: string }> } | undefined;
  let early: ConfigError | undefined;
  try {
    sections = loadConfigSections(file, env);
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    early = err;
  }
  const factories = await loadFactories(sections ? sections.connectors.map((c) => c.type) : connectorTypes()).catch((err: unknown) => {
    if (!(err instanceof ConnectorUnavailableError)) throw err;
    if (!sections) throw early!;
    throw new ConfigError(file ?? '(defaults)', `connectors[${sections.connectors.findIndex((c) => c.type === err.type)}].type`, err.message);
  });
  const helpdeskFactories = await loadHelpdeskFactories(sections ? sections.helpdesks.map((h) => h.type) : helpdeskTypes());
  const loaded = loadConfig(file, env, (entry: ConnectorEntry) => {
    const factory = factories.get(entry.type);
    if (!factory) return { ok: false, unknownType: connectorTypes() };
    const { type: _t, account: _a, enabled: _e, required: _r, ...options } = entry;
    // The channel's own schema decides which keys exist; the entry's common keys are known too.
    return checkOptions(factory.options, options, Object.keys(ConnectorEntry.shape));
  }, (entry: HelpdeskEntry) => {
    const factory = helpdeskFactories.get(entry.type);
    if (!factory) return { ok: false, unknownType: helpdeskTypes() };
    const { type: _t, id: _i, enabled: _e, retryFor: _rf, backoffBase: _bb, backoffMax: _bm, redeliverAfter: _ra, ...options } = entry;
    return checkOptions(factory.options, options, Object.keys(HelpdeskEntry.shape));
  });
  // Two types on one channel (whatsapp and whatsapp-cloud) would share subjects and state.
  const seen = new Map<string, string>();
  loaded.config.connectors.forEach((c, i) => {
    const channel = factories.get(c.type)?.channel ?? c.type;
    const key = `${channel}/${c.account}`;
    const other = seen.get(key);
    if (other && other !== c.type) {
      throw new ConfigError(loaded.file, `connectors[${i}].account`, `account "${c.account}" is already used on channel ${channel} by a ${other} connector; pick another name`);
    }
    seen.set(key, c.type);
  });
  checkReferences(loaded, factories);
  return { loaded, factories, helpdeskFactories };
}

async function main(argv: string[]): Promise<number> {
  let line: CommandLine;
  try {
    line = parseCommandLine(argv);
  } catch (err) {
    process.stderr.write(`omnigate: ${errorMessage(err)}\n${USAGE}\n`);
    return 64; // EX_USAGE
  }
  const { command } = line;
  if (line.help) {
    process.stdout.write(`${USAGE}\n`);
    return 0;
  }
  if (command !== 'start' && command !== 'check-config' && command !== 'dlq') {
    process.stderr.write(`${USAGE}\n`);
    return 64;
  }
  const file = configPath(line.config, process.env);
  if (command === 'dlq') {
    let nats;
    try {
      nats = loadNatsSection(file, process.env);
    } catch (err) {
      if (!(err instanceof ConfigError)) throw err;
      process.stderr.write(`omnigate: ${err.message}\n`);
      return 78;
    }
    const { deadLetters } = await import('./dlq.js');
    const { replay } = line.dlq;
    const r = await deadLetters(nats, { ...line.dlq, out: (text) => process.stdout.write(`${text}\n`) });
    process.stderr.write(`omnigate: ${r.listed} dead letter(s)${replay ? `, ${r.replayed} replayed, ${r.refused} refused or still invalid, ${r.failed} failed` : ''}\n`);
    return r.failed > 0 ? 1 : 0;
  }
  let loaded: LoadedConfig;
  let factories: Map<string, ConnectorFactory<any>>;
  let helpdeskFactories: Map<string, HelpdeskFactory<any>>;
  try {
    ({ loaded, factories, helpdeskFactories } = await loadAll(file, process.env));
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`omnigate: ${err.message}\n`);
      return 78; // EX_CONFIG
    }
    throw err;
  }
  if (command === 'check-config') {
    process.stdout.write(`${describeConfig(loaded, factories)}\n`);
    return 0;
  }
  setPersonalDataInLogs(loaded.config.log.personalData);
  const log = createLogger({ level: loaded.config.log.level });
  for (const warning of configWarnings(loaded, factories)) log.warn({ file: loaded.file }, warning);
  // Before anything is created: the stores (PGlite, nats-server) make files with modes of their own.
  const umaskBefore = restrictUmask();
  if (umaskBefore !== undefined && (umaskBefore & 0o077) !== 0o077) log.info({ umask: octal(umaskBefore | 0o077), was: octal(umaskBefore) }, 'files this process creates are private to the service user (umask)');
  const gateway = new Gateway({ loaded, factories, helpdeskFactories, log });
  let stopping: Promise<void> | undefined;
  const shutdown = (signal: string) => {
    if (stopping) return;
    if (signal === 'SIGHUP') log.warn({ signal }, 'SIGHUP: stopping gracefully (a closed terminal; omnigate reloads no config: restart it to apply a change)');
    else log.info({ signal }, 'signal received');
    // Gateway.stop keeps to the budget itself; this is the backstop if something ignores it.
    const backstop = setTimeout(() => {
      log.fatal({ shutdownTimeout: loaded.config.shutdownTimeout }, 'shutdown did not finish within shutdownTimeout; exiting');
      process.exit(1);
    }, loaded.config.shutdownTimeout + 1000);
    backstop.unref();
    // An abandoned step exits 1: a supervisor's record of the stop should say it was not clean.
    stopping = gateway.stop().then(
      (graceful) => process.exit(graceful ? 0 : 1),
      (err) => {
        log.error({ err: errorMessage(err) }, 'shutdown failed');
        process.exit(1);
      },
    );
  };
  process.on('SIGTERM', () => shutdown('SIGTERM'));
  process.on('SIGINT', () => shutdown('SIGINT'));
  // Node's default for SIGHUP is to die at once, without a line: leases held to their TTL, a
  // stop nobody could explain (a "reload", a closed ssh session). A graceful stop instead.
  process.on('SIGHUP', () => shutdown('SIGHUP'));
  installCrashPolicy(log, () => gateway.stop());
  try {
    await gateway.start();
  } catch (err) {
    if (err instanceof NatsServerMissingError || err instanceof DataDirLockedError || err instanceof NatsAccessError || err instanceof UnsafeServerError || err instanceof PartitionCountError || err instanceof PortInUseError) log.fatal(err.message);
    else log.fatal({ err: errorMessage(err) }, 'failed to start');
    await gateway.stop().catch(() => {});
    return err instanceof NatsAccessError || err instanceof PartitionCountError ? 78 : 1;
  }
  return -1; // keep running
}

if (process.argv[1] && /cli\.(js|ts)$/.test(process.argv[1])) {
  main(process.argv.slice(2)).then(
    (code) => {
      if (code >= 0) process.exit(code);
    },
    (err) => {
      process.stderr.write(`omnigate: ${errorMessage(err)}\n`);
      process.exit(1);
    },
  );
}
