/*
 * The one retry-delay policy of pitr: an exponentially growing ceiling with jitter, so that many
 * agents failing at once (a store outage) do not retry in lockstep.
 */

export interface BackoffPolicy {
  /** Ceiling of the first retry's delay; it doubles per retry. */
  baseMs: number;
  /** Largest ceiling. */
  maxMs: number;
  /**
   * 'full': anywhere in [0, ceiling) (best spread; for request retries, where a short wait is fine).
   * 'half': in [ceiling/2, ceiling) (a floor, for loops whose retries cost work each time).
   */
  jitter: 'full' | 'half';
}

/** Delay before retry `retry` (1 = the first retry, after one failure), in whole ms. */
export function backoffMs(retry: number, policy: BackoffPolicy): number {
  // The exponent is capped so the ceiling stays finite whatever the count.
  const ceiling = Math.min(policy.maxMs, policy.baseMs * 2 ** Math.min(Math.max(0, retry - 1), 40));
  const share = policy.jitter === 'full' ? Math.random() : 0.5 + Math.random() * 0.5;
  return Math.round(ceiling * share);
}

/**
 * Wait `ms`, or reject with `onAbort()` as soon as `signal` aborts (at once if it already has).
 * Leaves no timer or listener behind either way.
 */
export function sleepAbortable(ms: number, signal: AbortSignal | undefined, onAbort: () => Error): Promise<void> {
  if (signal?.aborted) return Promise.reject(onAbort());
  return new Promise<void>((resolve, reject) => {
    const abort = (): void => {
      clearTimeout(timer);
      reject(onAbort());
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', abort);
      resolve();
    }, ms);
    signal?.addEventListener('abort', abort, { once: true });
  });
}
