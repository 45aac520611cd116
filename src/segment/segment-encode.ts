import { setImmediate as yieldToEventLoop } from 'node:timers/promises';
import { deflateParallel } from './deflate-parallel.js';
import { zstdBound, zstdCompressInto } from './zstd.js';
import {
  DEFAULT_DEFLATE_LEVEL,
  SEGMENT_FORMAT_VERSION,
  SEGMENT_MAGIC,
  TRAILER_LENGTH,
  checkLevel,
  checksum64,
  encodePrefix,
  failRange,
  hashUpdate,
  writeU64BE,
  xxhashApi,
} from './framing.js';
import { headerFromRaw, type SegmentHeaderInput } from './segment-header.js';
import { checkSummaryMatches, summarizeBody } from './segment-records.js';
import type { SegmentHeader } from './segment-types.js';

export interface EncodeSegmentOptions {
  /** zlib level 0..9 for 'deflate' (default 1); 'zstd' always uses ZSTD_LEVEL. */
  level?: number;
  /**
   * For 'deflate': end the stream so that joinSegments can merge this object without inflating
   * it. Every 'zstd' segment can be joined.
   */
  joinable?: boolean;
}

/**
 * Build a complete segment object. The body must hold exactly the transactions the header names
 * (checked; RangeError otherwise), so a wrong object is never produced in the first place.
 */
export async function encodeSegment(h: SegmentHeaderInput, body: Uint8Array, opts?: EncodeSegmentOptions): Promise<Uint8Array> {
  const header = checkedHeader(h, body);
  const level = opts?.level ?? DEFAULT_DEFLATE_LEVEL;
  checkLevel(level);

  if (header.compression === 'zstd') return frameZstdSegment(header, body);
  const stored = header.compression === 'deflate' ? await deflateParallel(body, level, { joinable: opts?.joinable ?? false }) : [body];
  return frameSegment(header, stored);
}

/** The header of the segment `body` makes; RangeError unless the body holds exactly what `h` names. */
function checkedHeader(h: SegmentHeaderInput, body: Uint8Array): SegmentHeader {
  const fail = failRange('encodeSegment');
  const header = headerFromRaw(h as unknown as Record<string, unknown>, SEGMENT_FORMAT_VERSION, fail, false);
  header.bodyLength = body.length;
  checkSummaryMatches(header, summarizeBody(body, header.pageSize, fail), fail);
  return header;
}

/**
 * encodeSegment's zstd object, byte for byte, as lent chunks (see PutBody) for a body too large to
 * hold twice: each frame is compressed into one reused buffer and handed on from there, the
 * checksum computed on the way. `body` must not change until the last chunk has been taken.
 */
export async function* encodeSegmentChunks(h: Omit<SegmentHeaderInput, 'compression'>, body: Uint8Array): AsyncGenerator<Uint8Array> {
  const header = checkedHeader({ ...h, compression: 'zstd' }, body);
  const hasher = (await xxhashApi()).create64();
  const prefix = encodePrefix(SEGMENT_MAGIC, { ...header });
  hashUpdate(hasher, prefix);
  yield prefix;
  const out = Buffer.allocUnsafe(zstdBound(Math.min(ZSTD_FRAME_BYTES, body.length)));
  for (let at = 0; at < body.length; at += ZSTD_FRAME_BYTES) {
    const frame = out.subarray(0, zstdCompressInto(out, body.subarray(at, at + ZSTD_FRAME_BYTES)));
    hashUpdate(hasher, frame);
    yield frame;
  }
  const trailer = new Uint8Array(TRAILER_LENGTH);
  writeU64BE(trailer, 0, hasher.digest());
  yield trailer;
}

/**
 * A zstd segment body is stored as frames of at most this many body bytes, with a turn of the
 * event loop between them: the binding is synchronous, and one frame for a 32 MiB spool entry held
 * the agent's event loop for ~100 ms at a time on a slow core, so everything else the agent does
 * (a snapshot's reads, uploads, /metrics) advanced one step per entry.
 */
const ZSTD_FRAME_BYTES = 4 << 20;

/**
 * frameSegment for a zstd body, compressed straight into the object behind its prefix: no second
 * buffer for the compressed bytes and no copy of them (capture spools every WAL byte through here).
 * The buffer is sized for the worst case, but only what is written is ever touched. `body` must
 * not change until the promise settles.
 */
async function frameZstdSegment(header: SegmentHeader, body: Uint8Array): Promise<Uint8Array> {
  const prefix = encodePrefix(SEGMENT_MAGIC, { ...header });
  let bound = 0;
  for (let at = 0; at < body.length; at += ZSTD_FRAME_BYTES) bound += zstdBound(Math.min(ZSTD_FRAME_BYTES, body.length - at));
  const out = Buffer.allocUnsafeSlow(prefix.length + bound + TRAILER_LENGTH);
  out.set(prefix, 0);
  let end = prefix.length;
  for (let at = 0; at < body.length; at += ZSTD_FRAME_BYTES) {
    if (at > 0) await yieldToEventLoop();
    end += zstdCompressInto(out.subarray(end), body.subarray(at, at + ZSTD_FRAME_BYTES));
  }
  writeU64BE(out, end, await checksum64(out.subarray(0, end)));
  return out.subarray(0, end + TRAILER_LENGTH);
}

/** Prefix (magic, header), the stored body from its pieces (copied once, here), checksum trailer. */
export async function frameSegment(header: SegmentHeader, stored: readonly Uint8Array[]): Promise<Uint8Array> {
  const prefix = encodePrefix(SEGMENT_MAGIC, { ...header });
  let end = prefix.length;
  for (const piece of stored) end += piece.length;
  // Every byte is written below, so no zero fill; never a slice of Node's shared pool.
  const out = Buffer.allocUnsafeSlow(end + TRAILER_LENGTH);
  out.set(prefix, 0);
  let at = prefix.length;
  for (const piece of stored) {
    out.set(piece, at);
    at += piece.length;
  }
  writeU64BE(out, end, await checksum64(out.subarray(0, end)));
  return out;
}
