import { availableParallelism } from 'node:os';
import { constants, deflateRaw, type ZlibOptions } from 'node:zlib';

/**
 * Bodies are compressed in slices of this size, independently and at the same time: async zlib
 * runs each slice on libuv's pool, so a large body uses every core instead of one.
 */
export const DEFLATE_SLICE_BYTES = 1024 * 1024;
/**
 * Slices compressing at once: one per core, at most four (libuv's pool has four threads by
 * default). More would only hold more buffers and compressor state (~0.5 MiB each) at once.
 */
const SLICES_IN_FLIGHT = Math.max(1, Math.min(4, availableParallelism()));
/**
 * memLevel 9 (zlib's default is 8) makes level 1 about 7% faster on SQLite pages for 256 KiB more
 * memory per compressor, with the same ratio (measured in bench/segment-bench.ts's data).
 */
const MEM_LEVEL = 9;
/** Output buffer per zlib round trip; the default 16 KiB means many trips per slice. */
const ZLIB_CHUNK = 256 * 1024;

/** Deflate one slice; every slice but the last of a stream ends with a sync flush. */
export function deflateSlice(slice: Uint8Array, level: number, last: boolean): Promise<Buffer> {
  const opts: ZlibOptions = {
    level,
    memLevel: MEM_LEVEL,
    chunkSize: Math.min(ZLIB_CHUNK, Math.max(16 * 1024, slice.length)),
    // Every slice but the last ends with a sync flush (an empty stored block, byte aligned) instead
    // of a final block, so the slices concatenate into ONE valid raw deflate stream.
    finishFlush: last ? constants.Z_FINISH : constants.Z_SYNC_FLUSH,
  };
  return new Promise((resolve, reject) => deflateRaw(slice, opts, (err, out) => (err ? reject(err) : resolve(out))));
}

/**
 * Raw deflate (RFC 1951) of `body` as a single stream that any inflater reads, built from
 * independently compressed slices (the way pigz does it). Each slice starts with an empty window,
 * so matches never reach across a slice boundary: about 0.1% larger output at 1 MiB slices, for
 * close to N-core speed on large bodies.
 */
export async function deflateParallel(body: Uint8Array, level: number): Promise<Uint8Array> {
  if (body.length <= DEFLATE_SLICE_BYTES * 1.5) return deflateSlice(body, level, true);
  const slices: Uint8Array[] = [];
  for (let at = 0; at < body.length; at += DEFLATE_SLICE_BYTES) {
    // Fold a short tail into the previous slice rather than compress a tiny one alone.
    const end = body.length - (at + DEFLATE_SLICE_BYTES) < DEFLATE_SLICE_BYTES / 2 ? body.length : at + DEFLATE_SLICE_BYTES;
    slices.push(body.subarray(at, end));
    if (end === body.length) break;
  }
  // The streaming form does the scheduling (one slice per core, in order).
  const parts: Uint8Array[] = [];
  for await (const part of deflateSlices(slices, level)) parts.push(part);
  return Buffer.concat(parts);
}

/**
 * The streaming form, for snapshots: the chunks of `body` (each ideally DEFLATE_SLICE_BYTES) are
 * compressed as independent slices, up to SLICES_IN_FLIGHT at once, and yielded in order as one
 * raw deflate stream. One chunk is held back until the next arrives, to know which is the last.
 * Memory: a few slices in and out, whatever the stream's length.
 */
export async function* deflateSlices(body: AsyncIterable<Uint8Array> | Iterable<Uint8Array>, level: number): AsyncGenerator<Uint8Array> {
  const inFlight: Promise<Buffer>[] = [];
  const start = (slice: Uint8Array, last: boolean): void => {
    const p = deflateSlice(slice, level, last);
    p.catch(() => {}); // awaited below, in order
    inFlight.push(p);
  };
  let held: Uint8Array | undefined;
  for await (const chunk of body) {
    if (held !== undefined) {
      start(held, false);
      if (inFlight.length >= SLICES_IN_FLIGHT) yield await (inFlight.shift() as Promise<Buffer>);
    }
    held = chunk;
  }
  start(held ?? new Uint8Array(0), true);
  while (inFlight.length > 0) yield await (inFlight.shift() as Promise<Buffer>);
}
