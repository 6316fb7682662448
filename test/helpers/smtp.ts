/**
 * An SMTP stand-in on 127.0.0.1 (smtp-server): accepts everything by default and keeps each
 * message's envelope and raw bytes; recipients can be made to fail with a chosen reply
 * (4xx transient, 5xx permanent) to exercise delivery errors.
 */
import { SMTPServer, type SMTPServerDataStream } from 'smtp-server';

export interface ReceivedMail {
  from: string;
  to: string[];
  raw: Buffer;
  at: number;
}

export interface TestSmtp {
  host: string;
  port: number;
  received: ReceivedMail[];
  /** Reply to RCPT TO for this address with `code message` (e.g. 550 / 451), `times` times (default: always). */
  rejectRecipient(address: string, code: number, message: string, times?: number): void;
  clearRejections(): void;
  /** The next `times` messages are read whole, then the connection is dropped before the server answers the final dot. */
  dropAfterData(times?: number): void;
  /** Resolves with the first received mail (past or future) matching `pred`. */
  waitFor(pred: (m: ReceivedMail) => boolean, timeoutMs?: number): Promise<ReceivedMail>;
  stop(): Promise<void>;
}

export async function startSmtp(): Promise<TestSmtp> {
  const received: ReceivedMail[] = [];
  const rejections = new Map<string, { code: number; message: string; left: number }>();
  let dropsAfterData = 0;
  const waiters = new Set<{ pred: (m: ReceivedMail) => boolean; resolve: (m: ReceivedMail) => void }>();
  const server = new SMTPServer({
    authOptional: true,
    disabledCommands: ['STARTTLS'],
    logger: false,
    size: 64 * 1024 * 1024,
    onAuth(_auth, _session, cb) {
      cb(null, { user: 'test' });
    },
    onRcptTo(address, _session, cb) {
      const r = rejections.get(address.address.toLowerCase());
      if (!r || r.left <= 0) return cb();
      r.left--;
      const err = new Error(r.message) as Error & { responseCode: number };
      err.responseCode = r.code;
      cb(err);
    },
    onData(stream: SMTPServerDataStream, session, cb) {
      const chunks: Buffer[] = [];
      stream.on('data', (c: Buffer) => chunks.push(c));
      stream.on('end', () => {
        if (dropsAfterData > 0) {
          dropsAfterData--;
          // The body is here, no answer goes back: the client cannot tell whether it was taken.
          for (const c of (server as unknown as { connections: Set<{ id: string; _socket: { destroy(): void } }> }).connections) if (c.id === session.id) c._socket.destroy();
          return;
        }
        const mail: ReceivedMail = {
          from: session.envelope.mailFrom ? session.envelope.mailFrom.address : '',
          to: session.envelope.rcptTo.map((r) => r.address),
          raw: Buffer.concat(chunks),
          at: Date.now(),
        };
        received.push(mail);
        for (const w of waiters) if (w.pred(mail)) {
          waiters.delete(w);
          w.resolve(mail);
        }
        cb();
      });
    },
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.server.address() as { port: number }).port;
  return {
    host: '127.0.0.1',
    port,
    received,
    rejectRecipient(address, code, message, times = Infinity) {
      rejections.set(address.toLowerCase(), { code, message, left: times });
    },
    clearRejections() {
      rejections.clear();
    },
    dropAfterData(times = 1) {
      dropsAfterData = times;
    },
    waitFor(pred, timeoutMs = 10_000) {
      const found = received.find(pred);
      if (found) return Promise.resolve(found);
      return new Promise((resolve, reject) => {
        const w = { pred, resolve };
        waiters.add(w);
        setTimeout(() => {
          if (waiters.delete(w)) reject(new Error(`no matching mail at the SMTP stand-in within ${timeoutMs} ms (${received.length} received)`));
        }, timeoutMs);
      });
    },
    stop: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}
