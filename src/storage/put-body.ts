import { isPitrError, PitrError } from '../errors.js';
import { messageOf } from './storage-keys.js';

/*
 * Reading a streamed put body (PutBody in storage-client.ts), the same for every backend: in
 * order, one chunk at a time, each raced against the put's signal, failures named, and the source
 * released when the put stops early.
 */

/**
 * A streamed put body's chunks as bytes, for both backends. Each next chunk is raced against
 * `signal` (a stalled source must not hold an aborted put open), with its own listener per race:
 * racing every chunk against one long-lived promise would keep every chunk reachable from it until
 * the put ends (the whole body in memory). The source's failures become STORAGE_IO naming the key
 * (a PitrError passes through). A source left unfinished (abort, failure, the consumer stopped) is
 * released, not awaited, since a stalled one may never settle: a stream destroyed, an iterator
 * returned.
 */
export async function* bodyChunks(
  body: AsyncIterable<unknown>,
  where: { url: string; key: string; signal: AbortSignal | undefined; abortError: () => PitrError },
): AsyncGenerator<Uint8Array> {
  const chunks = body[Symbol.asyncIterator]();
  let finished = false;
  try {
    for (;;) {
      let bytes: Uint8Array;
      try {
        const next = await nextOrAbort(chunks, where.signal, where.abortError);
        if (next.done) break;
        bytes = toBytes(next.value);
      } catch (err) {
        if (isPitrError(err)) throw err;
        throw bodyReadError(where.url, where.key, err);
      }
      if (bytes.length > 0) yield bytes;
    }
    finished = true;
  } finally {
    if (!finished) releaseBody(body, chunks);
  }
}

/**
 * Let go of a streamed put body that will not be read to its end: a stream is destroyed (its file
 * or socket closed), an iterator returned. Not awaited: a stalled source may never settle.
 */
export function releaseBody(body: AsyncIterable<unknown>, started?: AsyncIterator<unknown>): void {
  const destroy = (body as { destroy?: unknown }).destroy;
  if (typeof destroy === 'function') (destroy as () => void).call(body);
  else (started ?? body[Symbol.asyncIterator]()).return?.().catch(() => undefined);
}

function nextOrAbort(chunks: AsyncIterator<unknown>, signal: AbortSignal | undefined, abortError: () => PitrError): Promise<IteratorResult<unknown>> {
  if (signal === undefined) return chunks.next();
  if (signal.aborted) return Promise.reject(abortError());
  return new Promise((resolve, reject) => {
    const onAbort = (): void => reject(abortError());
    signal.addEventListener('abort', onAbort, { once: true });
    chunks.next().then(
      (r) => {
        signal.removeEventListener('abort', onAbort);
        resolve(r);
      },
      (err: unknown) => {
        signal.removeEventListener('abort', onAbort);
        reject(err);
      },
    );
  });
}

/** A put body's chunk as bytes (object-mode streams are refused). */
function toBytes(chunk: unknown): Uint8Array {
  if (chunk instanceof Uint8Array) return chunk;
  if (typeof chunk === 'string') return Buffer.from(chunk, 'utf8');
  throw new TypeError(`put body yielded a ${typeof chunk}, expected bytes (object-mode streams are not supported)`);
}

/** A put's body stream failed: nothing was stored. */
function bodyReadError(url: string, key: string, err: unknown): PitrError {
  return new PitrError(
    'STORAGE_IO',
    `put of "${key}" to ${url} failed: reading the body failed: ${messageOf(err)}`,
    'The source of the object failed; nothing was stored. See the cause for details.',
    { cause: err },
  );
}
