/** A config's problems: each names its key (a path such as `connectors[1].token`) and why. */
import type { GatewayConfig } from './config-schema.js';

/** One thing wrong in a config: the key (a path such as `connectors[1].token`) and why. */
export interface ConfigProblem {
  key: string;
  problem: string;
}

/** A config that cannot be used: the first problem, and every other one found in the same pass. */
export class ConfigError extends Error {
  constructor(
    readonly file: string,
    readonly key: string,
    readonly problem: string,
    readonly others: ConfigProblem[] = [],
    /** The config as its top-level schema read it, when only checks past the schema failed. */
    readonly afterSchema?: GatewayConfig,
  ) {
    super(`config error in ${file}: ${key || '(root)'}: ${problem}${others.map((o) => `\n  and ${o.key || '(root)'}: ${o.problem}`).join('')}`);
    this.name = 'ConfigError';
  }

  /** Every problem, the first one included. */
  get problems(): ConfigProblem[] {
    return [{ key: this.key, problem: this.problem }, ...this.others];
  }
}

/** One error for all `problems` (at least one). */
export function configError(file: string, problems: ConfigProblem[], afterSchema?: GatewayConfig): ConfigError {
  const [first, ...others] = problems;
  return new ConfigError(file, first!.key, first!.problem, others, afterSchema);
}

export function formatPath(prefix: string, path: ReadonlyArray<PropertyKey>): string {
  let out = prefix;
  for (const p of path) out += typeof p === 'number' ? `[${p}]` : out ? `.${String(p)}` : String(p);
  return out;
}
