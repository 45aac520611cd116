import binding from 'zstd-napi/binding.js';

/**
 * Zstandard (RFC 8878) for segment and snapshot bodies: the codec pitr writes since segment format
 * 2 and snapshot format 3. Measured on WAL pages of the bench's app (bench/segment-bench.ts data,
 * one core): level 1 compresses ~740 MB/s at ratio 6.9 and decompresses ~2.7 GB/s, where zlib's
 * level 1 does ~290 MB/s at 6.1 and inflates ~870 MB/s. Capture compresses every committed byte, so
 * that difference is most of the CPU pitr takes from a busy app, and restore decompresses it all.
 *
 * The binding is synchronous: a call blocks the event loop for its duration (4 MiB, a segment
 * body's largest frame, ~6-13 ms to compress). Every frame carries its content size in its header;
 * a segment body is frames of at most 4 MiB (see frameZstdSegment), and joinSegments concatenates
 * the frames of several segments.
 */
export const ZSTD_LEVEL = 1;

let cctx: InstanceType<typeof binding.CCtx> | undefined;
let dctx: InstanceType<typeof binding.DCtx> | undefined;

/** The most a zstd frame of `n` input bytes can take (ZSTD_compressBound). */
export function zstdBound(n: number): number {
  return binding.compressBound(n);
}

/** One zstd frame holding `body`, written at the start of `out` (at least zstdBound(body.length) bytes); returns its length. */
export function zstdCompressInto(out: Uint8Array, body: Uint8Array): number {
  if (out.length < zstdBound(body.length)) throw new RangeError(`zstd output needs ${zstdBound(body.length)} bytes, got ${out.length}`);
  cctx ??= new binding.CCtx();
  return cctx.compress(out, body, ZSTD_LEVEL);
}

/**
 * Decompress every frame in `stored` into exactly `expected` bytes. Throws when the frames hold
 * more, fewer, or are not zstd frames, including stray bytes after the last frame. Every frame
 * must declare its content size (pitr's writers always do) and the sizes must add up to
 * `expected` before anything is allocated: a header whose size lies cannot make this allocate
 * more than the frames say they hold.
 *
 * With `into` at least `expected` bytes long the result is a view of its start, else a fresh
 * buffer: a reader that is done with each body before the next keeps reusing one (a fresh buffer
 * per body cost restores tens of thousands of page faults).
 */
export function zstdDecompressExact(stored: Uint8Array, expected: number, into?: Uint8Array): Uint8Array {
  const declared = declaredSize(stored);
  if (declared !== expected) throw new Error(`the frames declare ${declared ?? 'no'} content size, expected ${expected} bytes`);
  dctx ??= new binding.DCtx();
  const out = into !== undefined && into.length >= expected ? into.subarray(0, expected) : Buffer.allocUnsafe(expected);
  let n: number;
  try {
    n = dctx.decompress(out, stored);
  } catch (err) {
    // A failed call can leave the context mid-frame; the next caller must not inherit that.
    dctx = undefined;
    throw err;
  }
  if (n !== expected) throw new Error(`decompresses to ${n} bytes, expected ${expected}`);
  return out;
}

/** Sum of the content sizes the frames in `stored` declare; null if one does not declare it. */
function declaredSize(stored: Uint8Array): number | null {
  let total = 0;
  for (let rest = stored; rest.length > 0; ) {
    const size = binding.getFrameContentSize(rest);
    if (size === null) return null;
    total += size;
    rest = rest.subarray(binding.findFrameCompressedSize(rest));
  }
  return total;
}
