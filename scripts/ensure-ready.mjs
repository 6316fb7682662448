#!/usr/bin/env node
// Set-up that `npm start`, `npm test` and `npm run bench` run first, so a fresh machine needs no
// other step: installs npm dependencies when node_modules is missing or stale, builds dist/ for
// start, and installs the system packages the mode needs (nats-server; dovecot-imapd and pgbouncer for tests)
// with apt-get when running as root. Without root it says exactly what to install.
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';

const mode = process.argv[2] ?? 'test';
const root = new URL('..', import.meta.url).pathname;
process.chdir(root);
const say = (m) => process.stderr.write(`[omnigate setup] ${m}\n`);

function newer(a, b) {
  return existsSync(a) && (!existsSync(b) || statSync(a).mtimeMs > statSync(b).mtimeMs);
}

// 0. Node: engines says >=22 (the image runs 24), but npm only warns about engines, so the
// two README commands keep working on an older Node; say so once instead of failing.
const major = Number(process.versions.node.split('.')[0]);
if (major < 22) say(`Node ${process.version} is past end of life; omnigate targets Node 22 and 24 (it still runs here: .ci/run tests this Node and 24)`);

// 1. npm dependencies
if (!existsSync('node_modules/.package-lock.json') || newer('package-lock.json', 'node_modules/.package-lock.json')) {
  say('installing npm dependencies (npm ci)');
  execFileSync('npm', ['ci', '--no-audit', '--no-fund'], { stdio: 'inherit' });
}

// 2. system packages
const onPath = (bin) => [...(process.env.PATH ?? '').split(':'), '/usr/sbin', '/usr/bin', '/usr/local/bin'].some((d) => d && existsSync(join(d, bin)));
const needed = [];
if (!onPath('nats-server')) needed.push('nats-server');
if (mode === 'test' && !onPath('dovecot')) needed.push('dovecot-imapd');
if (mode === 'test' && !onPath('pgbouncer')) needed.push('pgbouncer'); // test/read-model/pgbouncer.test.ts
if (needed.length) {
  const isRoot = process.getuid?.() === 0;
  if (isRoot && onPath('apt-get')) {
    say(`installing ${needed.join(' ')} with apt-get`);
    const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
    spawnSync('apt-get', ['update', '-qq'], { stdio: 'inherit', env });
    const r = spawnSync('apt-get', ['install', '-y', '-qq', ...needed], { stdio: 'inherit', env });
    if (r.status !== 0) say(`apt-get install ${needed.join(' ')} failed; install them and try again`);
  } else {
    say(`missing system packages: ${needed.join(' ')}. Install them (Debian/Ubuntu: sudo apt-get install -y ${needed.join(' ')}).`);
    if (mode !== 'start') process.exit(1);
  }
}

// 3. build for start and bench (both run dist/cli.js)
if (mode === 'start' || mode === 'bench') {
  const srcNewest = (dir) => readdirSync(dir, { withFileTypes: true }).reduce((max, e) => {
    const p = join(dir, e.name);
    return Math.max(max, e.isDirectory() ? srcNewest(p) : statSync(p).mtimeMs);
  }, 0);
  if (!existsSync('dist/cli.js') || srcNewest('src') > statSync('dist/cli.js').mtimeMs) {
    // The same build as `npm run build`: tsc, then the console's static files next to it.
    say('building (npm run build)');
    execFileSync('npm', ['run', 'build', '--silent'], { stdio: 'inherit' });
  }
}
