import { createInflateRaw } from 'node:zlib';
import { SLICES_IN_FLIGHT } from './deflate-parallel.js';
import { inflateExact } from './inflate-exact.js';
import { zstdBound, zstdDecompressExact } from './zstd.js';
import { mapInOrder } from '../util/bounded.js';
import { addAbortSignal, type Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { PitrError } from '../errors.js';
import {
  PREFIX_LENGTH,
  TRAILER_LENGTH,
  type Fail,
  checkMagic,
  corrupt,
  failCorrupt,
  hashUpdate,
  hex64,
  readHeaderLength,
  readU64BE,
  xxhashApi,
} from './framing.js';
import { CHUNK_LENGTH_BYTES, aborted, parseHeaderBytes, type SnapshotHeader } from './snapshot-format.js';

/**
 * Where a readSnapshot caller gets the pages: `pages` holds whole pages firstPgno, firstPgno+1, ...
 * and belongs at byte `offset` of the database file.
 */
export type OnPages = (firstPgno: number, pages: Uint8Array, offset: number) => void | Promise<void>;

export interface ReadSnapshotOptions {
  /** Object name for error messages. */
  name?: string;
  /** On abort, `input` is destroyed and the call rejects with PitrError ABORTED. */
  signal?: AbortSignal;
  /** Told the header once it is parsed, before any pages (for progress: dbSizePages). */
  onHeader?: (header: SnapshotHeader) => void;
}

/** Output buffer of the version-1 reader's single inflate stream: 256 KiB made it ~50% slower. */
const ZLIB_CHUNK = 1024 * 1024;

/** zlib's conservative deflateBound (any level or memLevel): the most a stream of `n` input bytes can take. */
function deflateBound(n: number): number {
  return n + Math.ceil(n / 8) + Math.ceil(n / 64) + 5;
}

/**
 * Stream-read a snapshot: checks the header, delivers pages 1..dbSizePages in order to `onPages`
 * (in runs of whole pages, valid during the call only; awaited), then verifies length and trailer
 * checksum. Pages are delivered before the checksum is known, so the caller must write them
 * somewhere it can discard (restore uses OUT.tmp) until this resolves. A version-2 deflate body is
 * inflated several chunks at once, in order. Throws OBJECT_CORRUPT naming opts.name for any bad,
 * truncated or checksum-failing object; errors of `input` and `onPages` pass through.
 */
export async function readSnapshot(input: Readable, onPages: OnPages, opts?: ReadSnapshotOptions): Promise<SnapshotHeader> {
  const name = opts?.name;
  const signal = opts?.signal;
  if (signal?.aborted) {
    input.destroy();
    throw aborted(signal, undefined);
  }
  if (signal) addAbortSignal(signal, input);
  // Errors raised by the caller's stream or callback are theirs to see unchanged; every other
  // failure (zlib's, mostly) means the object is bad.
  const passThrough = new WeakSet<object>();
  const reader = new ContentReader(input, passThrough);
  const hasher = (await xxhashApi()).create64();
  try {
    const prefix = await reader.readExact(PREFIX_LENGTH);
    if (prefix === undefined || prefix.length < PREFIX_LENGTH) {
      const got = prefix ?? reader.leftover();
      checkMagic(got, 'snapshot', name);
      throw corrupt('snapshot', name, `truncated: only ${reader.total} bytes`);
    }
    checkMagic(prefix, 'snapshot', name);
    const headerLength = readHeaderLength(prefix, 'snapshot', name);
    const headerBytes = await reader.readExact(headerLength);
    if (headerBytes === undefined) throw corrupt('snapshot', name, `truncated inside the header: only ${reader.total} bytes`);
    const header = parseHeaderBytes(headerBytes, name);
    hashUpdate(hasher, prefix);
    hashUpdate(hasher, headerBytes);
    opts?.onHeader?.(header);

    const fail = failCorrupt('snapshot', name);
    const pages = new PageAssembler(header, onPages, fail, passThrough);
    let storedBody = 0;
    async function* hashedBody(): AsyncGenerator<Uint8Array> {
      for await (const chunk of reader.content()) {
        hashUpdate(hasher, chunk);
        storedBody += chunk.length;
        yield chunk;
      }
    }
    if (header.compression === 'zstd') {
      // One output buffer for every chunk: onPages is done with the pages once its call settles.
      let out: Uint8Array | undefined;
      for await (const { stored, bytes, first } of storedChunks(reader, header, (b) => hashUpdate(hasher, b), fail)) {
        let body: Uint8Array;
        try {
          body = zstdDecompressExact(stored, bytes, out);
          out = body;
        } catch (err) {
          throw corrupt('snapshot', name, `the chunk of page ${first} does not decompress to the ${bytes} bytes of its pages`, err);
        }
        await pages.push(body);
      }
      for await (const chunk of hashedBody()) if (chunk.length > 0) fail(`stray bytes after the last compressed chunk`);
    } else if (header.compression === 'deflate' && header.chunkPages !== undefined) {
      const inflated = mapInOrder(
        storedChunks(reader, header, (bytes) => hashUpdate(hasher, bytes), fail),
        async ({ stored, bytes, first }) => {
          let inflated: { body: Uint8Array; consumed: number };
          try {
            inflated = await inflateExact(stored, bytes);
          } catch (err) {
            throw corrupt('snapshot', name, `the chunk of page ${first} does not inflate to the ${bytes} bytes of its pages`, err);
          }
          const { body, consumed } = inflated;
          if (body.length !== bytes) fail(`the chunk of page ${first} inflates to ${body.length} bytes, expected ${bytes}`);
          if (consumed !== stored.length) fail(`${stored.length - consumed} stray bytes after the compressed chunk of page ${first}`);
          return body;
        },
        SLICES_IN_FLIGHT,
      );
      for await (const body of inflated) await pages.push(body);
      for await (const chunk of hashedBody()) if (chunk.length > 0) fail(`stray bytes after the last compressed chunk`);
    } else if (header.compression === 'deflate') {
      const inflater = createInflateRaw({ chunkSize: ZLIB_CHUNK });
      await pipeline(hashedBody, inflater, async (inflated: AsyncIterable<Uint8Array>) => {
        for await (const chunk of inflated) await pages.push(chunk);
      });
      // zlib stops at the end of the deflate stream and ignores whatever follows it.
      if (inflater.bytesWritten !== storedBody) {
        fail(`${storedBody - inflater.bytesWritten} stray bytes after the end of the compressed body`);
      }
    } else {
      for await (const chunk of hashedBody()) await pages.push(chunk);
    }

    const trailer = reader.leftover();
    const expectedBody = header.dbSizePages * header.pageSize;
    if (trailer.length < TRAILER_LENGTH) {
      throw corrupt('snapshot', name, `truncated: ${reader.total} bytes, too short to hold the trailer`);
    }
    const computed = hasher.digest();
    const stored = readU64BE(trailer, 0);
    if (stored !== computed) {
      const detail = `checksum mismatch (trailer ${hex64(stored)}, computed ${hex64(computed)})`;
      if (header.compression === 'none') {
        const size = PREFIX_LENGTH + headerLength + expectedBody + TRAILER_LENGTH;
        if (reader.total < size) fail(`truncated: ${reader.total} of ${size} bytes; ${detail}`);
      }
      fail(detail);
    }
    pages.finish();
    return header;
  } catch (err) {
    if (signal?.aborted) throw aborted(signal, err);
    if (err instanceof PitrError) throw err;
    if (typeof err !== 'object' || err === null || passThrough.has(err)) throw err;
    throw corrupt('snapshot', name, 'compressed body is damaged or truncated', err);
  } finally {
    await reader.close();
  }
}

/**
 * The compressed chunks of a chunked body, each with the byte count it must decompress to, hashed
 * as they are read. A length beyond what the codec can take for its pages is corruption (and is
 * refused before anything that large is buffered).
 */
async function* storedChunks(reader: ContentReader, h: SnapshotHeader, hash: (bytes: Uint8Array) => void, fail: Fail): AsyncGenerator<{ stored: Uint8Array; bytes: number; first: number }> {
  const chunkPages = h.chunkPages as number;
  for (let first = 1; first <= h.dbSizePages; first += chunkPages) {
    const bytes = Math.min(chunkPages, h.dbSizePages - first + 1) * h.pageSize;
    const length = await reader.readExact(CHUNK_LENGTH_BYTES);
    if (length === undefined) fail(`truncated: ${reader.total} bytes, the chunk of page ${first} is missing`);
    hash(length);
    const n = new DataView(length.buffer, length.byteOffset, length.byteLength).getUint32(0, false);
    const bound = h.compression === 'zstd' ? zstdBound(bytes) : deflateBound(bytes);
    if (n === 0 || n > bound) fail(`the chunk of page ${first} claims ${n} compressed bytes for ${bytes} bytes of pages`);
    const stored = await reader.readExact(n);
    if (stored === undefined) fail(`truncated: ${reader.total} bytes, inside the chunk of page ${first}`);
    hash(stored);
    yield { stored, bytes, first };
  }
}

/**
 * Pulls chunks from a Readable and tells object content from the trailer by always holding the
 * last TRAILER_LENGTH bytes back: only at end of stream is it known that they are the trailer.
 */
class ContentReader {
  readonly #it: AsyncIterator<unknown>;
  readonly #passThrough: WeakSet<object>;
  #chunks: Uint8Array[] = [];
  #buffered = 0;
  #eof = false;
  total = 0;

  constructor(input: Readable, passThrough: WeakSet<object>) {
    this.#it = input[Symbol.asyncIterator]();
    this.#passThrough = passThrough;
  }

  async #pull(): Promise<boolean> {
    if (this.#eof) return false;
    let r: IteratorResult<unknown>;
    try {
      r = await this.#it.next();
    } catch (err) {
      if (typeof err === 'object' && err !== null) this.#passThrough.add(err);
      throw err;
    }
    if (r.done) {
      this.#eof = true;
      return false;
    }
    const v = r.value;
    if (!(v instanceof Uint8Array)) {
      const err = new TypeError('readSnapshot: input must be a byte stream, not an object or string stream');
      this.#passThrough.add(err);
      throw err;
    }
    if (v.length > 0) {
      this.#chunks.push(v);
      this.#buffered += v.length;
      this.total += v.length;
    }
    return true;
  }

  /** Exactly n content bytes (never eating into the last TRAILER_LENGTH), or undefined at end of stream. */
  async readExact(n: number): Promise<Uint8Array | undefined> {
    while (this.#buffered < n + TRAILER_LENGTH) {
      if (!(await this.#pull())) return undefined;
    }
    const parts = this.#take(n);
    return parts.length === 1 ? parts[0]! : Buffer.concat(parts);
  }

  /** The remaining content, as it arrives, without the held-back tail. */
  async *content(): AsyncGenerator<Uint8Array> {
    for (;;) {
      while (this.#buffered <= TRAILER_LENGTH) {
        if (!(await this.#pull())) return;
      }
      for (const part of this.#take(this.#buffered - TRAILER_LENGTH)) yield part;
    }
  }

  /** Whatever is still held (the trailer, once content() has finished). */
  leftover(): Uint8Array {
    return Buffer.concat(this.#chunks);
  }

  #take(n: number): Uint8Array[] {
    const out: Uint8Array[] = [];
    while (n > 0) {
      const head = this.#chunks[0]!;
      if (head.length <= n) {
        out.push(head);
        this.#chunks.shift();
        n -= head.length;
        this.#buffered -= head.length;
      } else {
        out.push(head.subarray(0, n));
        this.#chunks[0] = head.subarray(n);
        this.#buffered -= n;
        n = 0;
      }
    }
    return out;
  }

  /** Stop reading early: ending the iterator destroys the stream and releases its file handle. */
  async close(): Promise<void> {
    if (this.#eof) return;
    this.#eof = true;
    try {
      await this.#it.return?.();
    } catch {
      // The stream is being abandoned; its own error was already reported or is irrelevant.
    }
  }
}

/** Cuts a byte stream into runs of whole pages, passing views; a page split across chunks is copied. */
class PageAssembler {
  readonly #pageSize: number;
  readonly #count: number;
  readonly #onPages: OnPages;
  readonly #fail: Fail;
  readonly #passThrough: WeakSet<object>;
  readonly #scratch: Buffer;
  #fill = 0;
  #next = 1;

  constructor(h: SnapshotHeader, onPages: OnPages, fail: Fail, passThrough: WeakSet<object>) {
    this.#pageSize = h.pageSize;
    this.#count = h.dbSizePages;
    this.#onPages = onPages;
    this.#fail = fail;
    this.#passThrough = passThrough;
    this.#scratch = Buffer.allocUnsafe(h.pageSize);
  }

  async push(bytes: Uint8Array): Promise<void> {
    const ps = this.#pageSize;
    let off = 0;
    if (this.#fill > 0) {
      const n = Math.min(ps - this.#fill, bytes.length);
      this.#scratch.set(bytes.subarray(0, n), this.#fill);
      this.#fill += n;
      off = n;
      if (this.#fill < ps) return;
      this.#fill = 0;
      await this.#deliver(this.#scratch);
    }
    const whole = bytes.length - off - ((bytes.length - off) % ps);
    if (whole > 0) {
      await this.#deliver(bytes.subarray(off, off + whole));
      off += whole;
    }
    if (off < bytes.length) {
      if (this.#next > this.#count) this.#tooLong();
      this.#scratch.set(bytes.subarray(off), 0);
      this.#fill = bytes.length - off;
    }
  }

  finish(): void {
    if (this.#next <= this.#count || this.#fill > 0) {
      const got = (this.#next - 1) * this.#pageSize + this.#fill;
      this.#fail(`body is ${got} bytes, expected ${this.#count} pages of ${this.#pageSize} bytes`);
    }
  }

  #tooLong(): never {
    return this.#fail(`body is longer than the ${this.#count} pages the header says`);
  }

  async #deliver(data: Uint8Array): Promise<void> {
    const n = data.length / this.#pageSize;
    if (this.#next + n - 1 > this.#count) this.#tooLong();
    try {
      await this.#onPages(this.#next, data, (this.#next - 1) * this.#pageSize);
    } catch (err) {
      if (typeof err === 'object' && err !== null) this.#passThrough.add(err);
      throw err;
    }
    this.#next += n;
  }
}
