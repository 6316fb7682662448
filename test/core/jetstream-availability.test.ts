/**
 * What liveness counts when JetStream does not answer while the connection is up: JetStream away
 * for any client (silent on the gateway's connection and on a new one, or answering that it cannot
 * serve) is not something a restart mends, so /healthz holds; JetStream answering a new
 * connection but not ours is our client wedged, which a restart does mend, so it is counted; a
 * loop failing for its own reasons is counted as before. And against a real nats-server: frozen
 * (SIGSTOP) it is away, thawed it answers; a server without JetStream refuses.
 */
import { spawn } from 'node:child_process';
import { connect } from '@nats-io/transport-node';
import { afterAll, describe, expect, it } from 'vitest';
import { JetStreamAvailability, askJetStream, askJetStreamAnew, type JetStreamAnswer, type JetStreamLook } from '../../src/core/jetstream-availability.js';
import { isJetStreamRefusal } from '../../src/core/errors.js';
import { Supervisor, type SupervisedLoop } from '../../src/core/supervisor.js';
import { liveness } from '../../src/probes.js';
import { natsServerBinary, readPort, startNats, type TestNats } from '../helpers/nats-server.js';
import { testTempDir } from '../helpers/temp-dirs.js';
import { until } from '../helpers/until.js';
import { readFileSync } from 'node:fs';

function look(own: JetStreamAnswer, anew: JetStreamAnswer | Error, connected = true): JetStreamLook {
  return {
    connected: () => connected,
    ask: async () => own,
    askAnew: async () => {
      if (anew instanceof Error) throw anew;
      return anew;
    },
  };
}

const named = (name: string, message = name) => Object.assign(new Error(message), { name });

/** A supervisor with one loop that keeps failing with `err`, reached `failed`. */
async function failing(err: Error): Promise<{ sup: Supervisor; loop: SupervisedLoop }> {
  const sup = new Supervisor(undefined, { baseMs: 5, maxMs: 20, failAfter: 2 });
  const loop = sup.run('test.needs-jetstream', async () => {
    throw err;
  });
  await until(() => loop.status.state === 'failed', 'failed', 10_000);
  return { sup, loop };
}

/** Connected for minutes: past the reconnect grace, a loop's NATS timeouts were counted. */
const longUp = { connected: true, connectedSinceMs: Date.now() - 600_000 } as never;

describe('JetStreamAvailability.look', () => {
  it('answering on our connection: not away; silent on ours and on a new one, or refusing: away; answering a new one only: ours', async () => {
    const a = new JetStreamAvailability();
    expect(await a.look(look('answers', 'answers'))).toBe('answers');
    expect(a.away).toBeUndefined();
    expect(await a.look(look('silent', 'silent'))).toBe('away');
    expect(a.away).toMatchObject({ why: expect.stringMatching(/nor on a new one/) });
    expect(await a.look(look('silent', 'answers'))).toBe('ours');
    expect(a.away).toBeUndefined();
    expect(await a.look(look('refuses', 'answers'))).toBe('away');
    expect(a.away).toMatchObject({ why: expect.stringMatching(/cannot serve/) });
    expect(await a.look(look('answers', 'answers'))).toBe('answers');
    expect(a.away).toBeUndefined();
    // A server that does not even take a new connection in time is away; refused credentials say nothing.
    expect(await a.look(look('silent', named('TimeoutError', 'timeout')))).toBe('away');
    const before = a.away;
    expect(await a.look(look('silent', named('AuthorizationError', 'Authorization Violation')))).toBe('unknown');
    expect(a.away).toEqual(before);
    // Disconnected: nothing asked, nothing changed (liveness holds then anyway).
    expect(await a.look(look('answers', 'answers', false))).toBe('disconnected');
    expect(a.away).toEqual(before);
  });

  it('gives loops a grace after JetStream answers again, as after a reconnect', () => {
    let now = 1_000_000;
    const a = new JetStreamAvailability(undefined, () => now);
    expect(a.recentlyBack(now, 60_000)).toBe(false);
    a.markAway('test');
    now += 300_000;
    a.markBack();
    expect(a.recentlyBack(now + 59_000, 60_000)).toBe(true);
    expect(a.recentlyBack(now + 61_000, 60_000)).toBe(false);
  });
});

describe('liveness while JetStream does not answer', () => {
  it('a loop failing with NATS timeouts long after the connection came up: counted unless JetStream is away for any client', async () => {
    const { sup } = await failing(named('TimeoutError', 'timeout'));
    // No one looked at JetStream (the embedded server without its watchdog): counted, as before.
    expect(liveness({ supervisor: sup, bus: longUp } as never).ready).toBe(false);
    const jetStream = new JetStreamAvailability();
    await jetStream.look(look('silent', 'silent'));
    const away = liveness({ supervisor: sup, bus: longUp, jetStream } as never);
    expect(away.ready).toBe(true);
    expect(away.checks).toMatchObject({ failedLoops: [{ name: 'test.needs-jetstream', lastError: 'timeout' }], jetStream: { available: false, reason: expect.any(String) } });
    // JetStream answers a new connection but not ours: our client is wedged, a restart mends it.
    await jetStream.look(look('silent', 'answers'));
    // Just after a verdict of "not away" the loop's last failure still falls in the grace…
    await sup.stop();
    const later = await failing(named('TimeoutError', 'timeout'));
    const graced = liveness({ supervisor: later.sup, bus: longUp, jetStream } as never);
    expect(graced.ready).toBe(true);
    // …which does not cover a failure past it.
    const past = { away: undefined, recentlyBack: () => false };
    expect(liveness({ supervisor: later.sup, bus: longUp, jetStream: past } as never).ready).toBe(false);
    await later.sup.stop();
  });

  it('a loop failing for reasons of its own is counted whatever JetStream does, once JetStream answers', async () => {
    const { sup } = await failing(new Error('stuck'));
    const jetStream = new JetStreamAvailability();
    await jetStream.look(look('answers', 'answers'));
    const live = liveness({ supervisor: sup, bus: longUp, jetStream } as never);
    expect(live.ready).toBe(false);
    expect(live.checks).toEqual({ failedLoops: [expect.objectContaining({ name: 'test.needs-jetstream', lastError: 'stuck' })] });
    await sup.stop();
  });

  it("JetStream's own 503 (no leader, JetStream off) and no responders on its API are JetStream's: never counted", async () => {
    const noLeader = Object.assign(named('JetStreamApiError', 'JetStream system temporarily unavailable'), { status: 503, code: 10008 });
    const noResponders = Object.assign(named('RequestError', 'no responders'), { cause: Object.assign(named('NoResponders'), { subject: '$JS.API.STREAM.INFO.OMNI_OUT' }) });
    expect(isJetStreamRefusal(noLeader)).toBe(true);
    expect(isJetStreamRefusal(Object.assign(new Error('wrapped'), { cause: noLeader }))).toBe(true);
    expect(isJetStreamRefusal(noResponders)).toBe(true);
    // Not JetStream's: a core request nobody serves, a stream that is not there, a timeout (ours or its: asked again, above).
    expect(isJetStreamRefusal(Object.assign(named('NoResponders'), { subject: 'omni.cmd.x' }))).toBe(false);
    // A pull nobody answers is a consumer gone (a lost store): made again by a restart, so counted.
    expect(isJetStreamRefusal(Object.assign(named('NoResponders'), { subject: '$JS.API.CONSUMER.MSG.NEXT.OMNI_IN.router' }))).toBe(false);
    expect(isJetStreamRefusal(Object.assign(named('JetStreamApiError', 'stream not found'), { status: 404, code: 10059 }))).toBe(false);
    expect(isJetStreamRefusal(named('TimeoutError', 'timeout'))).toBe(false);
    for (const err of [noLeader, noResponders]) {
      const { sup, loop } = await failing(err);
      expect(loop.status.dependencyDown).toBe('jetstream');
      expect(liveness({ supervisor: sup, bus: longUp } as never)).toEqual({ ready: true, checks: {}, reasons: [] });
      await sup.stop();
    }
  });
});

describe('against a real nats-server', () => {
  let nats: TestNats | undefined;
  afterAll(async () => {
    nats?.process.kill('SIGCONT');
    await nats?.stop();
  });

  it('frozen (SIGSTOP): silent on the connection and on a new one, away; thawed: answers again', async () => {
    nats = await startNats();
    const nc = await connect({ servers: nats.url });
    try {
      const a = new JetStreamAvailability();
      const o: JetStreamLook = { connected: () => !nc.isClosed(), ask: () => askJetStream(nc, 5_000), askAnew: () => askJetStreamAnew({ url: nats!.url }, 5_000) };
      // A server that just opened its port may not serve JetStream for a few ms more (CI saw the
      // first look fail after 87 ms on a loaded machine): wait for it, as the gateway would.
      await until(async () => (await a.look(o)) === 'answers', 'JetStream answering after start', 30_000);
      nats.process.kill('SIGSTOP');
      // kill() returns once the signal is queued: on a loaded CI machine the server still answered
      // the next request (the look below said `answers`). Look once the kernel shows it stopped.
      await until(async () => processState(nats!.process.pid!) === 'T', 'nats-server stopped', 10_000);
      expect(await a.look(o)).toBe('away');
      expect(a.away?.why).toMatch(/could not be opened|nor on a new one/);
      nats.process.kill('SIGCONT');
      // Generous: a thawed server on a loaded machine may take a moment to catch up.
      await until(async () => (await a.look(o)) === 'answers', 'JetStream answering again', 60_000);
      expect(a.away).toBeUndefined();
      expect(a.recentlyBack(Date.now(), 60_000)).toBe(true);
    } finally {
      await nc.close();
    }
  });

  it('without JetStream: refused (no responders), on our connection and on a new one', async () => {
    const dir = testTempDir('omnigate-nojs-');
    const child = spawn(natsServerBinary(), ['-a', '127.0.0.1', '-p', '-1', '--ports_file_dir', dir], { stdio: ['ignore', 'ignore', 'pipe'] });
    try {
      const url = `nats://127.0.0.1:${await readPort(dir, child)}`;
      const nc = await connect({ servers: url });
      try {
        expect(await askJetStream(nc, 5_000)).toBe('refuses');
        expect(await askJetStreamAnew({ url }, 5_000)).toBe('refuses');
      } finally {
        await nc.close();
      }
    } finally {
      const exited = new Promise((r) => child.once('exit', r));
      child.kill('SIGTERM');
      await exited;
    }
  });
});

/** The kernel's state letter of a process (`T`: stopped by a signal), from /proc. */
function processState(pid: number): string {
  return readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.charAt(0);
}
