import { createInflateRaw } from 'node:zlib';
import { DEFLATE_SLICE_BYTES, SLICES_IN_FLIGHT, deflateSlice } from './deflate-parallel.js';
import { inflateExact } from './inflate-exact.js';
import { zstdBound, zstdCompressInto, zstdDecompressExact } from './zstd.js';
import { mapInOrder } from '../util/map-in-order.js';
import { addAbortSignal, type Readable, type Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { PitrError } from '../errors.js';
import {
  DEFAULT_DEFLATE_LEVEL,
  PREFIX_LENGTH,
  SNAPSHOT_FORMAT_VERSION,
  SNAPSHOT_MAGIC,
  TRAILER_LENGTH,
  type Fail,
  checkLevel,
  checkMagic,
  checkVersion,
  compressionField,
  corrupt,
  encodePrefix,
  failCorrupt,
  failRange,
  generationField,
  hashUpdate,
  hex64,
  intField,
  kindField,
  pageSizeField,
  readHeaderLength,
  readU64BE,
  unpackHeader,
  writeU64BE,
  xxhashApi,
} from './framing.js';
import { MAX_U32 } from './segment-body.js';
import { parseObjectKey } from './object-names.js';
import type { Compression } from './segment-types.js';

/** Decoded header of a snapshot object; see docs/FORMAT.md. */
export interface SnapshotHeader {
  /** 3 is written; 2 (no 'zstd') and 1 (a deflate body as one stream) are still read. */
  version: 1 | 2 | 3;
  kind: 'snapshot';
  generation: string;
  pageSize: number;
  /** The last transaction the image includes; 0 means before the generation's first transaction. */
  txid: number;
  commitTime: number;
  dbSizePages: number;
  compression: Compression;
  /**
   * Version 2 and later, compressed bodies only: the body is a series of independently compressed
   * chunks of this many pages each (the last may hold fewer), so that memory stays bounded and a
   * reader may decompress several at once.
   */
  chunkPages?: number;
}

export type SnapshotHeaderInput = Omit<SnapshotHeader, 'version' | 'kind' | 'chunkPages'>;

/**
 * Where a readSnapshot caller gets the pages: `pages` holds whole pages firstPgno, firstPgno+1, ...
 * and belongs at byte `offset` of the database file.
 */
export type OnPages = (firstPgno: number, pages: Uint8Array, offset: number) => void | Promise<void>;

export interface WriteSnapshotOptions {
  /** zlib level 0..9 for 'deflate' (default 1); 'zstd' always uses ZSTD_LEVEL. */
  level?: number;
  signal?: AbortSignal;
  /**
   * End `out` when done (default true), in which case the call resolves once `out` has finished.
   * With false, `out` stays open and may still be flushing buffered bytes when the call resolves.
   */
  end?: boolean;
}

export interface ReadSnapshotOptions {
  /** Object name for error messages. */
  name?: string;
  /** On abort, `input` is destroyed and the call rejects with PitrError ABORTED. */
  signal?: AbortSignal;
  /** Told the header once it is parsed, before any pages (for progress: dbSizePages). */
  onHeader?: (header: SnapshotHeader) => void;
}

/*
 * Pages are copied into batches of this size before being written: it turns per-page write()
 * calls into a few large ones, it means a caller may reuse the buffer it returns from nextPage,
 * and each batch is one compressed chunk. Memory in flight stays a small multiple of this,
 * whatever the database size.
 */
const BATCH_BYTES = DEFLATE_SLICE_BYTES;
/** Output buffer of the version-1 reader's single inflate stream: 256 KiB made it ~50% slower. */
const ZLIB_CHUNK = 1024 * 1024;
/** Length prefix of each chunk of a chunked (version 2 and later) compressed body. */
const CHUNK_LENGTH_BYTES = 4;
const SAFE = Number.MAX_SAFE_INTEGER;

/** Pages per chunk that pitr writes: one batch. */
function chunkPagesFor(pageSize: number): number {
  return Math.max(BATCH_BYTES, pageSize) / pageSize;
}

/** zlib's conservative deflateBound (any level or memLevel): the most a stream of `n` input bytes can take. */
function deflateBound(n: number): number {
  return n + Math.ceil(n / 8) + Math.ceil(n / 64) + 5;
}

function headerFromRaw(raw: Record<string, unknown>, version: 1 | 2 | 3, fail: Fail): SnapshotHeader {
  const header: SnapshotHeader = {
    version,
    kind: 'snapshot',
    generation: generationField(raw, fail),
    pageSize: pageSizeField(raw, fail),
    txid: intField(raw, 'txid', 0, SAFE, fail),
    commitTime: intField(raw, 'commitTime', 0, SAFE, fail),
    // A WAL-mode database always has page 1, which records the journal mode.
    dbSizePages: intField(raw, 'dbSizePages', 1, MAX_U32, fail),
    compression: compressionField(raw, 'snapshot', version, fail),
  };
  if (version >= 2 && header.compression !== 'none') header.chunkPages = intField(raw, 'chunkPages', 1, MAX_U32, fail);
  return header;
}

function aborted(signal: AbortSignal | undefined, cause: unknown): PitrError {
  return new PitrError('ABORTED', 'snapshot transfer was aborted', undefined, { cause: signal?.reason ?? cause });
}

/**
 * Stream a snapshot to `out`, pulling pages only as fast as `out` accepts bytes. Returns the bytes
 * written (the object size). Ends `out` unless opts.end is false; on error `out` is destroyed.
 * A Writable may queue what it is given, so each chunk of snapshotChunks is copied here; the agent
 * hands snapshotChunks to a put() directly, which needs no copies.
 */
export async function writeSnapshot(
  out: NodeJS.WritableStream | Writable,
  h: SnapshotHeaderInput,
  nextPage: (pgno: number) => Promise<Uint8Array> | Uint8Array,
  opts?: WriteSnapshotOptions,
): Promise<number> {
  const signal = opts?.signal;
  let written = 0;
  const chunks = snapshotChunks(h, nextPage, opts);
  async function* copies(): AsyncGenerator<Uint8Array> {
    for await (const chunk of chunks) {
      written += chunk.length;
      yield Buffer.from(chunk);
    }
  }
  try {
    await pipeline(copies, out as NodeJS.WritableStream, { end: opts?.end ?? true, ...(signal ? { signal } : {}) });
  } catch (err) {
    if (signal?.aborted) throw aborted(signal, err);
    throw err;
  }
  return written;
}

/**
 * A snapshot's bytes in order (header, compressed page batches, trailer), pulling pages
 * 1..dbSizePages from `nextPage` only as the consumer asks for more, so memory does not grow with
 * the database. Chunks are lent: one may be a reused buffer, valid only until the next chunk is
 * asked for (what put() promises of its body, see PutBody). A fresh buffer per 1 MiB chunk, and
 * the stream queues between here and the spool, made the first snapshot of a multi-GB database
 * allocate several times its size; the agent's RSS grew with it.
 */
export async function* snapshotChunks(
  h: SnapshotHeaderInput,
  nextPage: (pgno: number) => Promise<Uint8Array> | Uint8Array,
  opts?: Pick<WriteSnapshotOptions, 'level' | 'signal'>,
): AsyncGenerator<Uint8Array> {
  const input = h as unknown as Record<string, unknown>;
  const header = headerFromRaw({ ...input, chunkPages: chunkPagesFor(h.pageSize) }, SNAPSHOT_FORMAT_VERSION, failRange('writeSnapshot'));
  const level = opts?.level ?? DEFAULT_DEFLATE_LEVEL;
  checkLevel(level);
  const signal = opts?.signal;
  if (signal?.aborted) throw aborted(signal, undefined);
  const hasher = (await xxhashApi()).create64();
  const prefix = encodePrefix(SNAPSHOT_MAGIC, { ...header });
  const { pageSize, dbSizePages } = header;

  /** `reuse`: hand out the same batch buffer every time, for a consumer done with it by then. */
  async function* pages(reuse: boolean): AsyncGenerator<Uint8Array> {
    const batchBytes = Math.max(BATCH_BYTES, pageSize);
    let batch = Buffer.allocUnsafe(batchBytes);
    let fill = 0;
    for (let pgno = 1; pgno <= dbSizePages; pgno++) {
      const page = await nextPage(pgno);
      if (page.length !== pageSize) {
        throw new RangeError(`writeSnapshot: nextPage(${pgno}) returned ${page.length} bytes, expected the page size ${pageSize}`);
      }
      batch.set(page, fill);
      fill += pageSize;
      if (fill === batchBytes) {
        yield batch;
        if (!reuse) batch = Buffer.allocUnsafe(batchBytes);
        fill = 0;
      }
    }
    if (fill > 0) yield batch.subarray(0, fill);
  }

  // zstd: each batch is its own frame behind a length, compressed as it is asked for. deflate:
  // the same, several batches compressing at once (each needs its own buffers). none: the batches.
  const body = header.compression === 'zstd' ? zstdChunks(pages(true))
    : header.compression === 'deflate' ? deflateChunks(pages(false), level)
    : pages(true);

  // Everything handed out passes here, so the trailer covers exactly the bytes written.
  hashUpdate(hasher, prefix);
  yield prefix;
  for await (const chunk of body) {
    if (signal?.aborted) throw aborted(signal, undefined);
    hashUpdate(hasher, chunk);
    yield chunk;
  }
  if (signal?.aborted) throw aborted(signal, undefined);
  const trailer = new Uint8Array(TRAILER_LENGTH);
  writeU64BE(trailer, 0, hasher.digest());
  yield trailer;
}

/** `u32 BE stored length | raw deflate stream` per batch, in order, several compressing at once. */
async function* deflateChunks(batches: AsyncIterable<Uint8Array>, level: number): AsyncGenerator<Uint8Array> {
  for await (const stored of mapInOrder(batches, (batch) => deflateSlice(batch, level, true), SLICES_IN_FLIGHT)) yield* lengthAnd(stored);
}

/**
 * `u32 BE stored length | zstd frame` per batch, in order, each compressed into one reused buffer
 * and handed out from there (lent, see snapshotChunks). The batch is free again when this asks
 * for the next one.
 */
async function* zstdChunks(batches: AsyncIterable<Uint8Array>): AsyncGenerator<Uint8Array> {
  let out = Buffer.alloc(0);
  for await (const batch of batches) {
    const need = CHUNK_LENGTH_BYTES + zstdBound(batch.length);
    if (out.length < need) out = Buffer.allocUnsafe(need);
    const n = zstdCompressInto(out.subarray(CHUNK_LENGTH_BYTES), batch);
    out.writeUInt32BE(n, 0);
    yield out.subarray(0, CHUNK_LENGTH_BYTES + n);
  }
}

function lengthAnd(stored: Uint8Array): Uint8Array[] {
  const length = new Uint8Array(CHUNK_LENGTH_BYTES);
  new DataView(length.buffer).setUint32(0, stored.length, false);
  return [length, stored];
}

/** Header-only parse of the first bytes of a snapshot (the first 4096 bytes always suffice). No checksum. */
export function readSnapshotHeader(bytes: Uint8Array, name?: string): SnapshotHeader {
  checkMagic(bytes, 'snapshot', name);
  if (bytes.length < PREFIX_LENGTH) throw corrupt('snapshot', name, `truncated: ${bytes.length} bytes, too short for the header length`);
  const len = readHeaderLength(bytes, 'snapshot', name);
  if (bytes.length < PREFIX_LENGTH + len) {
    throw corrupt('snapshot', name, `truncated: the header needs ${PREFIX_LENGTH + len} bytes, only ${bytes.length} available`);
  }
  return parseHeaderBytes(bytes.subarray(PREFIX_LENGTH, PREFIX_LENGTH + len), name);
}

function parseHeaderBytes(headerBytes: Uint8Array, name: string | undefined): SnapshotHeader {
  const raw = unpackHeader(headerBytes, 'snapshot', name);
  const version = checkVersion(raw, 'snapshot', name) as 1 | 2 | 3;
  const fail = failCorrupt('snapshot', name);
  kindField(raw, 'snapshot', fail);
  const header = headerFromRaw(raw, version, fail);
  // Restore plans from keys alone: an object under a key that does not describe it must not be used.
  const key = name === undefined ? null : parseObjectKey(name);
  if (key !== null && (key.kind !== 'snapshot' || key.generation !== header.generation || key.txid !== header.txid || key.commitTime !== header.commitTime)) {
    fail(`its header (generation ${header.generation}, txid ${header.txid}, time ${header.commitTime}) does not match its key`);
  }
  return header;
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
