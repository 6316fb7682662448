/**
 * Sender identity from users.info (needs users:read, and users:read.email for the email), cached:
 * a busy support channel would otherwise cost one Web API call per message and hit Tier 4 limits.
 */
import type { WebClient } from '@slack/web-api';

interface Known {
  at: number;
  name?: string;
  email?: string;
}

export interface SlackIdentity {
  displayName?: string;
  handles: Record<string, string>;
}

export class UserDirectory {
  private readonly known = new Map<string, Known>();
  /** Lookups in flight, so a burst from one sender costs one call. */
  private readonly pending = new Map<string, Promise<Known>>();

  constructor(
    private readonly client: WebClient,
    private readonly ttlMs = 3_600_000,
    /** After a failed lookup, try again this much sooner than the TTL (the message goes on without a name). */
    private readonly retryFailedMs = 600_000,
  ) {}

  async identity(userId: string): Promise<SlackIdentity> {
    const u = await this.lookup(userId);
    return { displayName: u.name, handles: { slack: userId, ...(u.email ? { email: u.email } : {}) } };
  }

  /** The cached name, for rendering `<@U…>` mentions without a Web API call per mention. */
  knownName(userId: string): string | undefined {
    return this.known.get(userId)?.name;
  }

  private lookup(userId: string): Promise<Known> {
    const cached = this.known.get(userId);
    if (cached && Date.now() - cached.at < this.ttlMs) return Promise.resolve(cached);
    let p = this.pending.get(userId);
    if (!p) {
      p = this.fetch(userId).finally(() => this.pending.delete(userId));
      this.pending.set(userId, p);
    }
    return p;
  }

  private async fetch(userId: string): Promise<Known> {
    let u: Known;
    try {
      const res = await this.client.users.info({ user: userId });
      const p = res.user?.profile;
      u = { at: Date.now(), name: p?.display_name || p?.real_name || res.user?.real_name || res.user?.name, email: p?.email };
    } catch {
      u = { at: Date.now() - this.ttlMs + this.retryFailedMs };
    }
    if (this.known.size > 20_000) this.known.clear();
    this.known.set(userId, u);
    return u;
  }
}
