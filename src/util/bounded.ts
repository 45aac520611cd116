/*
 * The one set of bounded-concurrency helpers of pitr: a semaphore for requests that arrive on
 * their own (a storage client's permits), and maps over a known list or a stream of items.
 */

/** Counting semaphore, first come first served, whose waiters can give up when their signal aborts. */
export class Semaphore {
  private free: number;
  private readonly waiters: Array<() => void> = [];

  constructor(readonly size: number) {
    if (!Number.isInteger(size) || size < 1) throw new RangeError(`Semaphore size must be an integer >= 1, got ${size}`);
    this.free = size;
  }

  /** Permits in use (held, not waited for). */
  get inUse(): number {
    return this.size - this.free;
  }

  /**
   * Resolves with a release function (safe to call twice) once a permit is free; rejects with
   * `onAbort()` if `signal` aborts first (or already has).
   */
  async acquire(signal?: AbortSignal, onAbort: () => Error = () => abortedError(signal)): Promise<() => void> {
    if (signal?.aborted) throw onAbort();
    if (this.free > 0) {
      this.free--;
      return this.releaser();
    }
    return new Promise((resolve, reject) => {
      const grant = (): void => {
        signal?.removeEventListener('abort', abort);
        resolve(this.releaser());
      };
      const abort = (): void => {
        const i = this.waiters.indexOf(grant);
        if (i !== -1) this.waiters.splice(i, 1);
        reject(onAbort());
      };
      this.waiters.push(grant);
      signal?.addEventListener('abort', abort, { once: true });
    });
  }

  /** `fn` run under a permit, released however it ends. */
  async run<T>(fn: () => Promise<T>, signal?: AbortSignal): Promise<T> {
    const release = await this.acquire(signal);
    try {
      return await fn();
    } finally {
      release();
    }
  }

  private releaser(): () => void {
    let done = false;
    return () => {
      if (done) return;
      done = true;
      // Hand the permit straight to the next waiter, so a stream of new arrivals cannot starve it.
      const next = this.waiters.shift();
      if (next !== undefined) next();
      else this.free++;
    };
  }
}

/** A function that runs the calls given to it with at most `n` at once (p-limit's shape). */
export function limit(n: number): <T>(fn: () => Promise<T>) => Promise<T> {
  const sem = new Semaphore(n);
  return (fn) => sem.run(fn);
}

/**
 * `fn` over every item with at most `n` calls running at once; the results in item order. After a
 * call fails no new call starts; the ones running are waited for, then the first failure is
 * thrown (nothing is left running behind the caller's back).
 */
export async function mapBounded<T, R>(items: readonly T[], n: number, fn: (item: T, index: number) => Promise<R>): Promise<R[]> {
  if (!(n >= 1)) throw new RangeError(`mapBounded needs a limit >= 1, got ${n}`);
  const out = new Array<R>(items.length);
  let next = 0;
  let failure: { error: unknown } | undefined;
  const worker = async (): Promise<void> => {
    while (next < items.length && failure === undefined) {
      const i = next++;
      try {
        out[i] = await fn(items[i] as T, i);
      } catch (error) {
        failure ??= { error };
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(n, items.length) }, worker));
  if (failure !== undefined) throw failure.error;
  return out;
}

/**
 * `fn` applied to each item of `source` with up to `n` calls running at once, the results
 * yielded in source order. At most `n` results are held; the source is read only as fast as the
 * consumer takes results. A rejection surfaces when its turn comes; calls still running then are
 * left to finish, their rejections ignored.
 */
export async function* mapInOrder<T, R>(source: AsyncIterable<T> | Iterable<T>, fn: (item: T) => Promise<R>, n: number): AsyncGenerator<R> {
  const inFlight: Promise<R>[] = [];
  for await (const item of source) {
    const p = fn(item);
    p.catch(() => {}); // awaited below, in order
    inFlight.push(p);
    if (inFlight.length >= n) yield await (inFlight.shift() as Promise<R>);
  }
  while (inFlight.length > 0) yield await (inFlight.shift() as Promise<R>);
}

function abortedError(signal: AbortSignal | undefined): Error {
  const reason: unknown = signal?.reason;
  return reason instanceof Error ? reason : new Error('aborted', { cause: reason });
}
