/** What each channel benchmark (bench/channels/<channel>.ts, `export async function run`) returns. */
export interface ChannelBenchResult {
  /** e.g. "telegram round trip (update → ticket → reply → sendMessage)" */
  name: string;
  /** How many messages went through. */
  events: number;
  /** Throughput of the measured path. */
  per_s: number;
  p50_ms: number;
  p99_ms: number;
  note?: string;
}

export interface ChannelBenchOptions {
  /** Scale factor: 1 = default size; CI smoke runs may pass less. */
  scale: number;
}

export function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return 0;
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[i]!;
}

/** Rejects when `p` has not settled within `ms`: a lost message fails the channel's bench instead of hanging the run. */
export function within<T>(p: Promise<T>, ms: number, what: () => string): Promise<T> {
  return Promise.race([p, new Promise<never>((_, reject) => setTimeout(() => reject(new Error(what())), ms).unref())]);
}
