import { DEFLATE_SLICE_BYTES, SLICES_IN_FLIGHT, deflateSlice } from './deflate-parallel.js';
import { zstdBound, zstdCompressInto } from './zstd.js';
import { mapInOrder } from '../util/bounded.js';
import type { Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import {
  DEFAULT_DEFLATE_LEVEL,
  SNAPSHOT_FORMAT_VERSION,
  SNAPSHOT_MAGIC,
  TRAILER_LENGTH,
  checkLevel,
  encodePrefix,
  failRange,
  hashUpdate,
  writeU64BE,
  xxhashApi,
} from './framing.js';
import { CHUNK_LENGTH_BYTES, aborted, headerFromRaw, type SnapshotHeaderInput } from './snapshot-format.js';

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

/*
 * Pages are copied into batches of this size before being written: it turns per-page write()
 * calls into a few large ones, it means a caller may reuse the buffer it returns from nextPage,
 * and each batch is one compressed chunk. Memory in flight stays a small multiple of this,
 * whatever the database size.
 */
const BATCH_BYTES = DEFLATE_SLICE_BYTES;

/** Pages per chunk that pitr writes: one batch. */
function chunkPagesFor(pageSize: number): number {
  return Math.max(BATCH_BYTES, pageSize) / pageSize;
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
