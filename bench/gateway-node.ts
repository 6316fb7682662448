/**
 * Which Node the bench runs its gateways on. The product declares the Node it supports
 * (package.json `engines`) and the image ships Node 24 (Dockerfile): a gateway measured on an
 * older Node the machine happens to have measures a runtime nobody runs it on. On this project's
 * 2-core machine Node 20 cost ~30 % more router CPU per event than Node 24 with the same build
 * (BENCHMARKS.md, "The runtime the bench measures").
 *
 * BENCH_GATEWAY_NODE=<node binary> picks one by hand (an older Node included, for comparisons).
 * Otherwise the bench's own Node when `engines` admits it, else Node 24 from `.ci/node24`, installed
 * from the npm registry as `.ci/run` does when it is not there yet.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

const ROOT = new URL('..', import.meta.url).pathname;
const NODE24 = join(ROOT, '.ci/node24/node_modules/node/bin/node');

export interface GatewayNode {
  /** The binary to spawn; undefined: the bench's own. */
  binary?: string;
  version: string;
  /** Why this one, for the bench's first line. */
  why: string;
}

const versionOf = (binary: string) => execFileSync(binary, ['--version'], { encoding: 'utf8' }).trim();
const major = (version: string) => Number(/^v?(\d+)/.exec(version)?.[1] ?? NaN);

/** The lowest major version `engines.node` admits (">=22" → 22); 0 when it says nothing readable. */
export function lowestSupportedMajor(engines: string | undefined): number {
  const m = engines ? />=\s*(\d+)/.exec(engines) : null;
  return m ? Number(m[1]) : 0;
}

export function gatewayNode(): GatewayNode {
  const chosen = process.env.BENCH_GATEWAY_NODE;
  if (chosen) return { binary: chosen, version: versionOf(chosen), why: 'BENCH_GATEWAY_NODE' };
  const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { engines?: { node?: string } };
  const lowest = lowestSupportedMajor(pkg.engines?.node);
  if (major(process.version) >= lowest) return { version: process.version, why: 'the bench\'s own' };
  if (!existsSync(NODE24) || major(versionOf(NODE24)) !== 24) {
    process.stdout.write(`node ${process.version} is older than the Node the gateway supports (engines ${pkg.engines?.node}): installing Node 24 from the npm registry into .ci/node24 for the gateways\n`);
    execFileSync('npm', ['install', '--prefix', join(ROOT, '.ci/node24'), '--no-save', '--no-audit', '--no-fund', 'node@24'], { stdio: 'inherit' });
  }
  return { binary: NODE24, version: versionOf(NODE24), why: `the image's Node: ${process.version} is older than engines ${pkg.engines?.node}` };
}
