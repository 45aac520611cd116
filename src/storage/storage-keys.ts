import { isPitrError, PitrError } from '../errors.js';
import type { ByteRange, ObjectInfo } from './storage-client.js';

/** Names of in-flight writes in the file backend; reserved in every backend. */
export const TEMP_PREFIX = '.tmp-';

/**
 * Why `key` is not a valid key (or prefix, when `isPrefix`), or undefined when it is. Every
 * backend applies the same rules, although S3 itself would accept more: a replica must be copyable
 * between backends, so no backend may hold a key another cannot.
 */
export function keyProblem(key: string, isPrefix: boolean): string | undefined {
  if (!isPrefix && key === '') return 'keys may not be empty';
  if (key.includes('\\')) return 'keys may not contain backslashes';
  if (key.includes('\0')) return 'keys may not contain NUL';
  if (key.startsWith('/')) return 'keys are relative to the replica root and may not start with "/"';
  const segments = key.split('/');
  for (let i = 0; i < segments.length; i++) {
    const seg = segments[i]!;
    // A prefix may end with "/" (a directory) or mid-name, so its last segment may be empty or partial.
    const last = i === segments.length - 1;
    if (seg === '' && !(isPrefix && last)) return 'keys may not contain empty segments ("//" or a trailing "/")';
    if (seg === '.' || seg === '..') return 'keys may not contain "." or ".." segments';
    if (seg.startsWith(TEMP_PREFIX)) return `key segments may not start with "${TEMP_PREFIX}" (reserved for in-flight writes)`;
  }
  return undefined;
}

/** A bad range is a caller bug, not a storage failure: RangeError. */
export function checkRange(range: ByteRange, key: string): void {
  const { start, end } = range;
  if (!Number.isSafeInteger(start) || !Number.isSafeInteger(end) || start < 0 || end < start) {
    throw new RangeError(`invalid byte range ${start}-${end} for "${key}": need integers with 0 <= start <= end`);
  }
}

/** S3 orders keys by their UTF-8 bytes; JS string comparison (UTF-16) differs above U+FFFF. */
export function sortByKey(infos: ObjectInfo[]): ObjectInfo[] {
  const keyed = infos.map((info) => ({ info, bytes: Buffer.from(info.key, 'utf8') }));
  keyed.sort((a, b) => Buffer.compare(a.bytes, b.bytes));
  return keyed.map((k) => k.info);
}

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

export function messageOf(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/** A put's body stream failed: nothing was stored. */
export function bodyReadError(url: string, key: string, err: unknown): PitrError {
  return new PitrError(
    'STORAGE_IO',
    `put of "${key}" to ${url} failed: reading the body failed: ${messageOf(err)}`,
    'The source of the object failed; nothing was stored. See the cause for details.',
    { cause: err },
  );
}
