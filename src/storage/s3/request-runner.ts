import { isPitrError } from '../../errors.js';
import { backoffMs, sleepAbortable } from '../../util/backoff.js';
import type { Semaphore } from '../../util/bounded.js';
import { isFirstByteTimeout, withFirstByteTimeout } from './first-byte-timeout.js';
import { abortError, ioError, isRetryable, type ErrorContext, type Op } from './s3-errors.js';
import type { S3Settings } from './s3-options.js';

export interface RunOptions {
  /**
   * May turn an error into a final answer (a PitrError to throw, or any value to rethrow as is)
   * before the retry logic looks at it.
   */
  classify?: (err: unknown) => unknown;
  /** A request the store may work on for long before it answers: it waits requestTimeoutMs for its first byte. */
  slowAnswer?: boolean;
}

/**
 * Runs S3 requests: each attempt under a permit, with per-attempt timeouts, retried with backoff
 * on transient failures, abortable at any point by the caller's signal.
 *
 * Timeouts, per attempt: firstByteTimeoutMs while the store keeps the request waiting (see
 * first-byte-timeout.ts), requestTimeoutMs of inactivity while a body is in transfer (the SDK's
 * socket timeout). No deadline on the whole attempt: a slow transfer that keeps moving (a part
 * on a thin uplink, a large get()) must not be cut and retried forever.
 */
export class RequestRunner {
  constructor(
    private readonly ctx: ErrorContext & { settings: Readonly<S3Settings> },
    /** Taken in this order for each attempt: the storage's own, then the store's (shared), if any. */
    private readonly permits: readonly Semaphore[],
  ) {}

  /** `attempt` gets the signal to pass to the SDK; it runs once per try. */
  async run<T>(op: Op, key: string, signal: AbortSignal | undefined, attempt: (signal: AbortSignal) => Promise<T>, opts: RunOptions = {}): Promise<T> {
    const { maxAttempts, firstByteTimeoutMs, requestTimeoutMs, baseDelayMs, maxDelayMs } = this.ctx.settings;
    const firstByte = { ms: opts.slowAnswer === true ? Math.max(firstByteTimeoutMs, requestTimeoutMs) : firstByteTimeoutMs, maxMs: requestTimeoutMs };
    const aborted = (): Error => abortError(this.ctx.url, signal!, op, key);
    for (let n = 1; ; n++) {
      if (signal?.aborted) throw aborted();
      const release = await this.acquire(signal, aborted);
      const ac = new AbortController();
      const onAbort = (): void => ac.abort(signal!.reason);
      signal?.addEventListener('abort', onAbort, { once: true });
      let timedOut = false;
      try {
        return await withFirstByteTimeout(firstByte, () => attempt(ac.signal));
      } catch (err) {
        if (signal?.aborted) throw aborted();
        const verdict = opts.classify?.(err);
        if (verdict !== undefined) throw verdict;
        if (isPitrError(err)) throw err;
        timedOut = isFirstByteTimeout(err);
        if (!(timedOut || isRetryable(err)) || n >= maxAttempts) throw ioError(this.ctx, op, key, err, n);
      } finally {
        signal?.removeEventListener('abort', onAbort);
        release();
      }
      // The timeout was the wait already: the retry goes out at once, on a fresh connection (the
      // dead one and its idle peers are closed), so a store that is back answers it straight away.
      if (!timedOut) await sleepAbortable(backoffMs(n, { baseMs: baseDelayMs, maxMs: maxDelayMs, jitter: 'full' }), signal, aborted);
    }
  }

  /** Every permit, in order (one order for all requests: no two can wait on each other's). */
  private async acquire(signal: AbortSignal | undefined, aborted: () => Error): Promise<() => void> {
    const held: Array<() => void> = [];
    const releaseAll = (): void => {
      for (const r of held.reverse()) r();
    };
    try {
      for (const p of this.permits) held.push(await p.acquire(signal, aborted));
    } catch (err) {
      releaseAll();
      throw err;
    }
    return releaseAll;
  }
}
