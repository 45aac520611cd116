import { inflateExact } from './inflate-exact.js';
import { zstdDecompressExact } from './zstd.js';
import type { PitrError } from '../errors.js';
import {
  PREFIX_LENGTH,
  TRAILER_LENGTH,
  checkMagic,
  checksum64,
  corrupt,
  failCorrupt,
  hashUpdate,
  hex64,
  knownVersion,
  peekVersion,
  readU64BE,
  unsupportedVersion,
  xxhashApi,
} from './framing.js';
import { parseHeader } from './segment-header.js';
import { checkSummaryMatches, summarizeBody } from './segment-records.js';
import type { SegmentHeader } from './segment-types.js';

/** A segment after decodeSegment: verified header and uncompressed body. */
export interface DecodedSegment {
  header: SegmentHeader;
  body: Uint8Array;
}

export interface DecodeOptions {
  /** Where a zstd body decompresses: a buffer of exactly `bytes` (e.g. from a BufferPool). */
  alloc?: (bytes: number) => Uint8Array;
}

/**
 * Verify the trailer checksum FIRST, then parse and check everything else; throws OBJECT_CORRUPT
 * (naming `name`) on any problem. For 'none' the body is a view into `bytes`.
 */
export async function decodeSegment(bytes: Uint8Array, name?: string, opts?: DecodeOptions): Promise<DecodedSegment> {
  const { header, stored: storedBody } = await readStoredSegment(bytes, name);
  const fail = failCorrupt('segment', name);
  let body: Uint8Array;
  if (header.compression === 'none') {
    if (storedBody.length !== header.bodyLength) {
      fail(`body is ${storedBody.length} bytes but the header says ${header.bodyLength}`);
    }
    body = storedBody;
  } else if (header.compression === 'zstd') {
    try {
      body = zstdDecompressExact(storedBody, header.bodyLength, opts?.alloc?.(header.bodyLength));
    } catch (err) {
      throw corrupt('segment', name, `body does not decompress to the ${header.bodyLength} bytes the header says`, err);
    }
  } else {
    let consumed: number;
    try {
      ({ body, consumed } = await inflateExact(storedBody, header.bodyLength));
    } catch (err) {
      throw corrupt('segment', name, `body does not inflate to the ${header.bodyLength} bytes the header says`, err);
    }
    if (body.length !== header.bodyLength) {
      fail(`body inflates to ${body.length} bytes but the header says ${header.bodyLength}`);
    }
    // zlib stops at the end of the deflate stream and ignores whatever follows it.
    if (consumed !== storedBody.length) {
      fail(`${storedBody.length - consumed} stray bytes after the end of the compressed body`);
    }
  }
  checkSummaryMatches(header, summarizeBody(body, header.pageSize, fail), fail);
  return { header, body };
}

/** Best explanation for a checksum failure: truncation, an unknown version, or plain damage. */
function checksumFailure(bytes: Uint8Array, name: string | undefined, stored: bigint, computed: bigint): PitrError {
  const detail = `checksum mismatch (trailer ${hex64(stored)}, computed ${hex64(computed)})`;
  const version = peekVersion(bytes);
  if (version !== undefined && knownVersion('segment', version) === undefined) {
    // A flipped bit in the version field must not read as "written by a newer pitr" alone.
    return unsupportedVersion('segment', name, version, `; also, its ${detail}`);
  }
  let header: SegmentHeader;
  try {
    header = parseHeader(bytes, name).header;
  } catch {
    return corrupt('segment', name, detail);
  }
  if (header.compression === 'none') {
    const expected = PREFIX_LENGTH + headerLength(bytes) + header.bodyLength + TRAILER_LENGTH;
    if (bytes.length < expected) return corrupt('segment', name, `truncated: ${bytes.length} of ${expected} bytes; ${detail}`);
    if (bytes.length > expected) return corrupt('segment', name, `${bytes.length - expected} unexpected trailing bytes; ${detail}`);
  }
  return corrupt('segment', name, detail);
}

function headerLength(bytes: Uint8Array): number {
  return new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength).getUint32(8, false);
}

/** A segment object's header and its stored (still compressed) body. */
export interface StoredSegment {
  header: SegmentHeader;
  stored: Uint8Array;
  /** The whole object, as read. */
  bytes: Uint8Array;
}

/**
 * Verify the trailer checksum FIRST, then parse the header, without inflating the body: enough to
 * pass the object on (see joinSegments), and the first half of decodeSegment. OBJECT_CORRUPT
 * (naming `name`) on any problem.
 */
export async function readStoredSegment(bytes: Uint8Array, name?: string): Promise<StoredSegment> {
  // The magic is checked before the checksum only to say "not a segment" instead of "checksum".
  checkMagic(bytes, 'segment', name);
  if (bytes.length < PREFIX_LENGTH + TRAILER_LENGTH) {
    throw corrupt('segment', name, `truncated: ${bytes.length} bytes, smaller than an empty object`);
  }
  const trailerAt = bytes.length - TRAILER_LENGTH;
  const stored = readU64BE(bytes, trailerAt);
  const computed = await checksum64(bytes.subarray(0, trailerAt));
  if (stored !== computed) throw checksumFailure(bytes, name, stored, computed);
  const { header, end } = parseHeader(bytes, name);
  return { header, stored: bytes.subarray(end, trailerAt), bytes };
}

/**
 * A stored segment's bytes passed on as they are read (lent chunks pass through, see PutBody),
 * checked the way readStoredSegment checks them: the magic, and the checksum of everything before
 * the trailer against the trailer. The checksum is known before the last chunk is handed on, so a
 * put fed from here never completes a corrupt object. For entries too large to read whole.
 */
export async function* verifiedStoredChunks(chunks: AsyncIterable<Uint8Array>, size: number, name: string): AsyncGenerator<Uint8Array> {
  if (size < PREFIX_LENGTH + TRAILER_LENGTH) throw corrupt('segment', name, `truncated: ${size} bytes, smaller than an empty object`);
  const hasher = (await xxhashApi()).create64();
  const trailerAt = size - TRAILER_LENGTH;
  const trailer = new Uint8Array(TRAILER_LENGTH);
  const prefix = new Uint8Array(PREFIX_LENGTH);
  let at = 0;
  for await (const chunk of chunks) {
    if (at < PREFIX_LENGTH) {
      prefix.set(chunk.subarray(0, PREFIX_LENGTH - at), at);
      if (at + chunk.length >= PREFIX_LENGTH) checkMagic(prefix, 'segment', name);
    }
    const end = at + chunk.length;
    if (end > size) throw corrupt('segment', name, `longer than the ${size} bytes it was stored with`);
    if (at < trailerAt) hashUpdate(hasher, chunk.subarray(0, Math.min(chunk.length, trailerAt - at)));
    if (end > trailerAt) trailer.set(chunk.subarray(Math.max(0, trailerAt - at)), Math.max(0, at - trailerAt));
    at = end;
    if (at === size) {
      const stored = readU64BE(trailer, 0);
      const computed = hasher.digest();
      if (stored !== computed) throw corrupt('segment', name, `checksum mismatch (trailer ${hex64(stored)}, computed ${hex64(computed)})`);
    }
    yield chunk;
  }
  if (at !== size) throw corrupt('segment', name, `truncated: ${at} of its ${size} bytes`);
}
