/** Reconnection delays: exponential from a base (the server's `retry:`), with jitter. */

export interface BackoffPolicy {
  /** The first delay; the server's `retry:` replaces it once a stream has sent one. */
  baseMs: number;
  maxMs: number;
}

/**
 * The delay before attempt `failures` (0 for the first retry): `base · 2^failures`, capped at
 * `max`, then drawn uniformly from its upper half, so that clients that lost the same node do
 * not come back in step, and none retries sooner than half the nominal delay.
 */
export function backoffDelay(policy: BackoffPolicy, failures: number, random: () => number = Math.random): number {
  const nominal = Math.min(policy.maxMs, policy.baseMs * 2 ** Math.min(failures, 30));
  return Math.round(nominal / 2 + random() * (nominal / 2));
}
