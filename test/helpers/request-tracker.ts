/**
 * A real, throwaway Request Tracker 5 (Debian 12's request-tracker5 with SQLite) per test file,
 * on a free port of 127.0.0.1, started and stopped by `request-tracker.sh` next to this file
 * (install: `.ci/run`, or `sudo bash test/helpers/request-tracker.sh install`). The instance has
 * root/password with an auth token, a SuperUser `agent`/`agentpass`, the global ticket custom
 * field "External ID", and captures the mail RT would send in `mailbox`.
 */
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);
const script = join(new URL('.', import.meta.url).pathname, 'request-tracker.sh');

export interface TestRt {
  dir: string;
  url: string;
  rest2: string;
  token: string;
  rootUser: string;
  rootPassword: string;
  agentUser: string;
  agentPassword: string;
  pid: number;
  mailbox: string;
  /** Stop the server (SIGTERM to its process group), keeping the database: `restart` brings it back. */
  pause(): Promise<void>;
  /** Start it again on the same port and database after `pause`. */
  restart(): Promise<void>;
  stop(): Promise<void>;
}

/** True when RT 5 is installed (`.ci/run` installs it on a fresh machine). */
export function rtInstalled(): boolean {
  return existsSync('/usr/share/request-tracker5/libexec/rt-server') && existsSync('/usr/sbin/rt-setup-database-5');
}

function parseEnv(out: string): Record<string, string> {
  const env: Record<string, string> = {};
  for (const line of out.split('\n')) {
    const m = /^([A-Z0-9_]+)=(.*)$/.exec(line.trim());
    if (m) env[m[1]!] = m[2]!;
  }
  return env;
}

export async function startRt(opts: { webhookUrl?: string; webhookSecret?: string } = {}): Promise<TestRt> {
  if (!rtInstalled()) throw new Error('Request Tracker 5 is not installed: run .ci/run (or sudo bash test/helpers/request-tracker.sh install)');
  const env = { ...process.env, RT_WEBHOOK_URL: opts.webhookUrl ?? '', RT_WEBHOOK_SECRET: opts.webhookSecret ?? '', RT_READY_TIMEOUT: '120' };
  const { stdout } = await run('bash', [script, 'start'], { env, maxBuffer: 1 << 20 });
  const e = parseEnv(stdout);
  const port = new URL(e.RT_URL!).port;
  let pid = Number(e.RT_PID);
  const rt: TestRt = {
    dir: e.RT_DIR!,
    url: e.RT_URL!,
    rest2: e.RT_REST2!,
    token: e.RT_TOKEN!,
    rootUser: e.RT_USER!,
    rootPassword: e.RT_PASS!,
    agentUser: e.RT_AGENT_USER!,
    agentPassword: e.RT_AGENT_PASS!,
    pid,
    mailbox: e.RT_MAILBOX!,
    async pause() {
      await run('bash', [script, 'stop', rt.dir]);
    },
    async restart() {
      // `start DIR` on an existing dir re-creates the database; start the server alone instead.
      const { stdout: out } = await run('bash', [script, 'resume', rt.dir], { env: { ...env, RT_PORT: port } });
      pid = Number(parseEnv(out).RT_PID);
      rt.pid = pid;
    },
    async stop() {
      await run('bash', [script, 'destroy', rt.dir]);
    },
  };
  return rt;
}

/** Calls RT's REST2 as a given user (the test playing the agent), returning status, body and Location. */
export async function rtCall(
  rt: TestRt,
  as: 'agent' | 'root',
  method: string,
  path: string,
  body?: unknown,
): Promise<{ status: number; body: any; location?: string }> {
  const auth =
    as === 'root'
      ? `token ${rt.token}`
      : `Basic ${Buffer.from(`${rt.agentUser}:${rt.agentPassword}`).toString('base64')}`;
  const res = await fetch(`${rt.rest2}${path}`, {
    method,
    headers: { authorization: auth, 'content-type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
    signal: AbortSignal.timeout(60_000),
  });
  const text = await res.text();
  let parsed: unknown = text;
  try {
    parsed = JSON.parse(text);
  } catch {
    // not JSON
  }
  return { status: res.status, body: parsed, location: res.headers.get('location') ?? undefined };
}
