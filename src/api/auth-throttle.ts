/**
 * Failed-authentication limiter for the bearer-token routes and the routes that check a secret of
 * their own (auth.ts CredentialThrottle): counts wrong tokens and secrets per client address and, after `failures` of them within `windowMs`, refuses that address for a whole window
 * without looking at what it presents. Memory is bounded: at most `trackedAddresses` addresses are
 * remembered, the oldest forgotten first, so an attacker rotating source addresses cannot grow it.
 */
import { isIPv6 } from 'node:net';
import type { Logger } from '../core/logger.js';

export interface AuthThrottleOptions {
  /** Wrong tokens an address may present within one window before it is refused. */
  failures: number;
  windowMs: number;
  /** Addresses remembered at once; past this the oldest is forgotten. */
  trackedAddresses: number;
}

interface Attempts {
  windowStart: number;
  failures: number;
  /** 0 until the address is throttled; then when it may try again. */
  blockedUntil: number;
}

export class AuthThrottle {
  private readonly byAddress = new Map<string, Attempts>();

  constructor(
    private readonly o: AuthThrottleOptions,
    private readonly log: Logger,
    private readonly now: () => number = Date.now,
  ) {}

  /** Milliseconds until `client` may present a token again; 0 when it may now. */
  retryAfterMs(client: string): number {
    const key = clientKey(client);
    const a = this.byAddress.get(key);
    if (!a) return 0;
    const now = this.now();
    if (a.blockedUntil > now) return a.blockedUntil - now;
    if (a.blockedUntil > 0) this.byAddress.delete(key);
    return 0;
  }

  /** A wrong token from `client`: counted, and the address throttled at the limit. */
  failed(client: string): void {
    const key = clientKey(client);
    const now = this.now();
    let a = this.byAddress.get(key);
    if (!a || now - a.windowStart >= this.o.windowMs) {
      a = { windowStart: now, failures: 0, blockedUntil: 0 };
      // Re-inserted, so the map's order stays the order windows started in (oldest first).
      this.byAddress.delete(key);
      this.byAddress.set(key, a);
      this.forgetOld(now);
    }
    a.failures++;
    if (a.failures < this.o.failures || a.blockedUntil > 0) return;
    // A full window from the last failure: ending it with the window that started at the first
    // would let failures sent at the end of one window be followed at once by as many again.
    a.blockedUntil = now + this.o.windowMs;
    // Once per address and window: the throttled requests that follow are only counted.
    this.log.warn({ client: key, failures: a.failures, windowMs: this.o.windowMs }, 'authentication throttled: too many wrong API tokens or channel secrets from one address');
  }

  /** Addresses tracked now (for tests of the bound). */
  get size(): number {
    return this.byAddress.size;
  }

  private forgetOld(now: number): void {
    // Expired windows from the front (cheap, amortised), then the oldest over the cap.
    for (const [key, a] of this.byAddress) {
      if (now - a.windowStart < this.o.windowMs || a.blockedUntil > now) break;
      this.byAddress.delete(key);
    }
    while (this.byAddress.size > this.o.trackedAddresses) this.byAddress.delete(this.byAddress.keys().next().value!);
  }
}

/**
 * The address attempts are counted under: IPv4 as it is (also when the socket reports it as
 * ::ffff:a.b.c.d), IPv6 by its /64, since one host is commonly given a whole /64 and could
 * otherwise take a fresh address for every few guesses.
 */
export function clientKey(address: string): string {
  const mapped = /^::ffff:(\d{1,3}(?:\.\d{1,3}){3})$/i.exec(address);
  if (mapped) return mapped[1]!;
  const bare = address.split('%')[0]!;
  if (!isIPv6(bare)) return address;
  const [head = '', tail] = bare.split('::');
  const groups = (part: string | undefined) => (part ? part.split(':').flatMap((g) => (g.includes('.') ? ['0', '0'] : [g])) : []);
  const front = groups(head);
  const back = groups(tail);
  const all = tail === undefined ? front : [...front, ...Array<string>(8 - front.length - back.length).fill('0'), ...back];
  return `${all.slice(0, 4).map((g) => parseInt(g, 16).toString(16)).join(':')}::/64`;
}
