import { availableParallelism } from 'node:os';
import { constants, deflateRaw, type ZlibOptions } from 'node:zlib';
import { mapInOrder } from '../util/bounded.js';

/**
 * Bodies are compressed in slices of this size, independently and at the same time: async zlib
 * runs each slice on libuv's pool, so a large body uses every core instead of one.
 */
export const DEFLATE_SLICE_BYTES = 1024 * 1024;
/**
 * Slices compressing at once: one per core, at most four (libuv's pool has four threads by
 * default). More would only hold more buffers and compressor state (~0.5 MiB each) at once.
 */
export const SLICES_IN_FLIGHT = Math.max(1, Math.min(4, availableParallelism()));
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
 * The end of a joinable stream: a sync flush (an empty stored block, which leaves the stream byte
 * aligned), then an empty final block with fixed codes (BFINAL=1, BTYPE=01, end-of-block: 10 bits,
 * 03 00). Cutting the last two bytes leaves a stream that another deflate stream may continue.
 */
const FINAL_EMPTY_BLOCK = Uint8Array.of(0x03, 0x00);
const JOINABLE_END = Uint8Array.of(0x00, 0x00, 0xff, 0xff, ...FINAL_EMPTY_BLOCK);

/** True when `stored` ends the way deflateParallel(..., { joinable: true }) ends a stream. */
export function isJoinable(stored: Uint8Array): boolean {
  if (stored.length < JOINABLE_END.length) return false;
  const tail = stored.subarray(stored.length - JOINABLE_END.length);
  return tail.every((b, i) => b === JOINABLE_END[i]);
}

/**
 * The pieces, in order, of one raw deflate stream that inflates to the concatenation of what each
 * joinable part inflates to, found without inflating anything: each part's final empty block is
 * cut and one is put back at the end. Views into the parts (the caller frames them in one copy);
 * the joined stream is joinable again. RangeError if a part is not joinable.
 */
export function joinDeflated(parts: readonly Uint8Array[]): Uint8Array[] {
  const pieces: Uint8Array[] = [];
  for (const p of parts) {
    if (!isJoinable(p)) throw new RangeError('joinDeflated: a part does not end with a sync flush and an empty final block');
    pieces.push(p.subarray(0, p.length - FINAL_EMPTY_BLOCK.length));
  }
  pieces.push(FINAL_EMPTY_BLOCK.slice());
  return pieces;
}

/**
 * Raw deflate (RFC 1951) of `body` as a single stream that any inflater reads, returned as the
 * pieces it was built from, in order (the caller frames them, copying once). Built from
 * independently compressed slices (the way pigz does it). Each slice starts with an empty window,
 * so matches never reach across a slice boundary: about 0.1% larger output at 1 MiB slices, for
 * close to N-core speed on large bodies.
 *
 * `joinable`: the stream ends with a sync flush and an empty final block (6 bytes more), so that
 * joinDeflated can later merge it with others without inflating and compressing again.
 */
export async function deflateParallel(body: Uint8Array, level: number, opts: { joinable?: boolean } = {}): Promise<Uint8Array[]> {
  const joinable = opts.joinable ?? false;
  if (!joinable && body.length <= DEFLATE_SLICE_BYTES * 1.5) return [await deflateSlice(body, level, true)];
  // The streaming form does the scheduling (one slice per core, in order).
  const pieces: Uint8Array[] = [];
  for await (const piece of deflateSlices(slicesOf(body), level, { joinable })) pieces.push(piece);
  return pieces;
}

/** `body` cut into DEFLATE_SLICE_BYTES views; a short tail is folded into the slice before it. */
function slicesOf(body: Uint8Array): Uint8Array[] {
  const slices: Uint8Array[] = [];
  for (let at = 0; at < body.length; at += DEFLATE_SLICE_BYTES) {
    const end = body.length - (at + DEFLATE_SLICE_BYTES) < DEFLATE_SLICE_BYTES / 2 ? body.length : at + DEFLATE_SLICE_BYTES;
    slices.push(body.subarray(at, end));
    if (end === body.length) break;
  }
  return slices;
}

/**
 * The streaming form: the chunks of `body` (each ideally DEFLATE_SLICE_BYTES) are compressed as
 * independent slices, up to SLICES_IN_FLIGHT at once, and yielded in order as one raw deflate
 * stream. Memory: a few slices in and out, whatever the stream's length. With `joinable`, the last
 * slice is sync-flushed too and the stream ends with an empty final block (see joinDeflated).
 */
export async function* deflateSlices(body: AsyncIterable<Uint8Array> | Iterable<Uint8Array>, level: number, opts: { joinable?: boolean } = {}): AsyncGenerator<Uint8Array> {
  const finish = !opts.joinable;
  yield* mapInOrder(markLast(body), ({ item, last }) => deflateSlice(item, level, last && finish), SLICES_IN_FLIGHT);
  if (opts.joinable) yield FINAL_EMPTY_BLOCK.slice();
}

/**
 * Each chunk with whether it is the last; one chunk is held back until the next arrives. An empty
 * source yields one empty chunk, so that the stream still gets its final block.
 */
async function* markLast(body: AsyncIterable<Uint8Array> | Iterable<Uint8Array>): AsyncGenerator<{ item: Uint8Array; last: boolean }> {
  let held: Uint8Array | undefined;
  for await (const chunk of body) {
    if (held !== undefined) yield { item: held, last: false };
    held = chunk;
  }
  yield { item: held ?? new Uint8Array(0), last: true };
}
