/**
 * `fn` applied to each item of `source` with up to `limit` calls running at once, the results
 * yielded in source order. Used to keep every core busy with async zlib (which runs on libuv's
 * pool) while a stream stays in order. At most `limit` results are held; the source is read only
 * as fast as the consumer takes results. A rejection surfaces when its turn comes; calls still
 * running then are left to finish, their rejections ignored.
 */
export async function* mapInOrder<T, R>(source: AsyncIterable<T> | Iterable<T>, fn: (item: T) => Promise<R>, limit: number): AsyncGenerator<R> {
  const inFlight: Promise<R>[] = [];
  for await (const item of source) {
    const p = fn(item);
    p.catch(() => {}); // awaited below, in order
    inFlight.push(p);
    if (inFlight.length >= limit) yield await (inFlight.shift() as Promise<R>);
  }
  while (inFlight.length > 0) yield await (inFlight.shift() as Promise<R>);
}
