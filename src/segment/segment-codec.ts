import { inflateExact } from './inflate-exact.js';
import { deflateParallel, isJoinable, joinDeflated } from './deflate-parallel.js';
import { setImmediate as yieldToEventLoop } from 'node:timers/promises';
import { zstdBound, zstdCompressInto, zstdDecompressExact } from './zstd.js';
import { PitrError } from '../errors.js';
import {
  DEFAULT_DEFLATE_LEVEL,
  SEGMENT_FORMAT_VERSION,
  PREFIX_LENGTH,
  SEGMENT_MAGIC,
  TRAILER_LENGTH,
  type Fail,
  checkLevel,
  checkMagic,
  checkVersion,
  checksum64,
  compressionField,
  corrupt,
  encodePrefix,
  failCorrupt,
  failRange,
  generationField,
  hashUpdate,
  hex64,
  intField,
  knownVersion,
  kindField,
  pageSizeField,
  peekVersion,
  readHeaderLength,
  readU64BE,
  unpackHeader,
  unsupportedVersion,
  writeU64BE,
  xxhashApi,
} from './framing.js';
import { COMMIT_RECORD_LENGTH, RECORD_TAG_LENGTH, getU53 } from './segment-body.js';
import { parseObjectKey } from './object-names.js';
import type { SegmentHeader, TxRecord } from './segment-types.js';

/** What encodeSegment needs besides the body; version, kind and bodyLength are derived. */
export type SegmentHeaderInput = Omit<SegmentHeader, 'version' | 'kind' | 'bodyLength'>;

export interface EncodeSegmentOptions {
  /** zlib level 0..9 for 'deflate' (default 1); 'zstd' always uses ZSTD_LEVEL. */
  level?: number;
  /**
   * For 'deflate': end the stream so that joinSegments can merge this object without inflating
   * it. Every 'zstd' segment can be joined.
   */
  joinable?: boolean;
}

/** A segment after decodeSegment: verified header and uncompressed body. */
export interface DecodedSegment {
  header: SegmentHeader;
  body: Uint8Array;
}

/** What a body's commit records say about it. */
interface BodySummary {
  txCount: number;
  firstTxid: number;
  lastTxid: number;
  firstTime: number;
  lastTime: number;
}

const SAFE = Number.MAX_SAFE_INTEGER;

function headerFromRaw(raw: Record<string, unknown>, version: 1 | 2, fail: Fail, withBodyLength: boolean): SegmentHeader {
  const generation = generationField(raw, fail);
  const pageSize = pageSizeField(raw, fail);
  const firstTxid = intField(raw, 'firstTxid', 1, SAFE, fail);
  const lastTxid = intField(raw, 'lastTxid', 1, SAFE, fail);
  const firstTime = intField(raw, 'firstTime', 0, SAFE, fail);
  const lastTime = intField(raw, 'lastTime', 0, SAFE, fail);
  const compression = compressionField(raw, 'segment', version, fail);
  const bodyLength = withBodyLength ? intField(raw, 'bodyLength', COMMIT_RECORD_LENGTH, SAFE, fail) : 0;
  if (lastTxid < firstTxid) fail(`lastTxid ${lastTxid} is before firstTxid ${firstTxid}`);
  if (lastTime < firstTime) fail(`lastTime ${lastTime} is before firstTime ${firstTime}`);
  return {
    version,
    kind: 'segment',
    generation,
    pageSize,
    firstTxid,
    lastTxid,
    firstTime,
    lastTime,
    compression,
    bodyLength,
  };
}

/**
 * Walk a body's records without copying pages: checks that it is whole records, ends with a commit,
 * and has contiguous txids with non-decreasing commit times.
 */
function summarizeBody(body: Uint8Array, pageSize: number, fail: Fail): BodySummary {
  const view = new DataView(body.buffer, body.byteOffset, body.byteLength);
  const end = body.length;
  const pageRecord = RECORD_TAG_LENGTH + pageSize;
  let at = 0;
  let txCount = 0;
  let firstTxid = 0;
  let lastTxid = 0;
  let firstTime = 0;
  let lastTime = 0;
  let pagesSinceCommit = 0;
  while (at < end) {
    if (end - at < RECORD_TAG_LENGTH) fail(`body ends inside a record tag at byte ${at}`);
    const tag = view.getUint32(at, false);
    if (tag !== 0) {
      if (end - at < pageRecord) fail(`body ends inside page ${tag} at byte ${at}`);
      at += pageRecord;
      pagesSinceCommit++;
      continue;
    }
    const c = readCommit(view, at, end, fail);
    if (txCount === 0) {
      firstTxid = c.txid;
      firstTime = c.commitTime;
    } else {
      if (c.txid !== lastTxid + 1) fail(`txid ${c.txid} at byte ${at} does not follow txid ${lastTxid}`);
      if (c.commitTime < lastTime) fail(`commit time of txid ${c.txid} goes backwards (${c.commitTime} < ${lastTime})`);
    }
    lastTxid = c.txid;
    lastTime = c.commitTime;
    txCount++;
    pagesSinceCommit = 0;
    at += COMMIT_RECORD_LENGTH;
  }
  if (pagesSinceCommit > 0) fail(`body ends with ${pagesSinceCommit} page record(s) not followed by a commit`);
  if (txCount === 0) fail('body holds no transaction');
  return { txCount, firstTxid, lastTxid, firstTime, lastTime };
}

function readCommit(view: DataView, at: number, end: number, fail: Fail): { dbSizePages: number; txid: number; commitTime: number } {
  if (end - at < COMMIT_RECORD_LENGTH) fail(`body ends inside a commit record at byte ${at}`);
  const dbSizePages = view.getUint32(at + 4, false);
  const txid = getU53(view, at + 8);
  const commitTime = getU53(view, at + 16);
  if (dbSizePages === 0) fail(`commit record at byte ${at} has database size 0`);
  if (txid === undefined || txid === 0) fail(`commit record at byte ${at} has txid outside 1..2^53-1`);
  if (commitTime === undefined) fail(`commit record at byte ${at} has a commit time beyond 2^53-1`);
  return { dbSizePages, txid: txid!, commitTime: commitTime! };
}

function checkSummaryMatches(h: SegmentHeader, s: BodySummary, fail: Fail): void {
  if (s.firstTxid !== h.firstTxid || s.lastTxid !== h.lastTxid) {
    fail(`header says txids ${h.firstTxid}..${h.lastTxid} but the body holds ${s.firstTxid}..${s.lastTxid}`);
  }
  if (s.firstTime !== h.firstTime || s.lastTime !== h.lastTime) {
    fail(`header says commit times ${h.firstTime}..${h.lastTime} but the body holds ${s.firstTime}..${s.lastTime}`);
  }
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
async function frameSegment(header: SegmentHeader, stored: readonly Uint8Array[]): Promise<Uint8Array> {
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

/** Header-only parse of a byte prefix of a segment (the first 4096 bytes always suffice). No checksum. */
export function readSegmentHeader(bytes: Uint8Array, name?: string): SegmentHeader {
  return parseHeader(bytes, name).header;
}

function parseHeader(bytes: Uint8Array, name: string | undefined): { header: SegmentHeader; end: number } {
  checkMagic(bytes, 'segment', name);
  if (bytes.length < PREFIX_LENGTH) throw corrupt('segment', name, `truncated: ${bytes.length} bytes, too short for the header length`);
  const len = readHeaderLength(bytes, 'segment', name);
  const end = PREFIX_LENGTH + len;
  if (bytes.length < end) {
    throw corrupt('segment', name, `truncated: the header needs ${end} bytes, only ${bytes.length} available`);
  }
  const raw = unpackHeader(bytes.subarray(PREFIX_LENGTH, end), 'segment', name);
  const version = checkVersion(raw, 'segment', name) as 1 | 2;
  const fail = failCorrupt('segment', name);
  kindField(raw, 'segment', fail);
  const header = headerFromRaw(raw, version, fail, true);
  checkAgainstKey(header, name, fail);
  return { header, end };
}

/**
 * Restore plans from keys alone, so an object stored under a key that does not describe it (a
 * backend or operator mix-up) must not be applied as if it were what the key says.
 */
function checkAgainstKey(h: SegmentHeader, name: string | undefined, fail: Fail): void {
  const key = name === undefined ? null : parseObjectKey(name);
  if (key === null) return;
  if (
    key.kind !== 'segment' ||
    key.generation !== h.generation ||
    key.firstTxid !== h.firstTxid ||
    key.lastTxid !== h.lastTxid ||
    key.firstTime !== h.firstTime ||
    key.lastTime !== h.lastTime
  ) {
    fail(
      `its header (generation ${h.generation}, txids ${h.firstTxid}..${h.lastTxid}, times ${h.firstTime}..${h.lastTime}) ` +
        'does not match its key',
    );
  }
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

/**
 * Iterate a verified body's transactions in order. Pages' data are views into `body` (no copy).
 * Still checks structure and txid contiguity, throwing OBJECT_CORRUPT, because it also runs over
 * concatenated bodies whose seams no single checksum covered.
 */
export function* iterateTransactions(body: Uint8Array, pageSize: number, name?: string): Generator<TxRecord> {
  const fail = failCorrupt('segment', name);
  const view = new DataView(body.buffer, body.byteOffset, body.byteLength);
  const end = body.length;
  const pageRecord = RECORD_TAG_LENGTH + pageSize;
  let at = 0;
  let pages: { pgno: number; data: Uint8Array }[] = [];
  let prev: { txid: number; commitTime: number } | undefined;
  while (at < end) {
    if (end - at < RECORD_TAG_LENGTH) fail(`body ends inside a record tag at byte ${at}`);
    const tag = view.getUint32(at, false);
    if (tag !== 0) {
      if (end - at < pageRecord) fail(`body ends inside page ${tag} at byte ${at}`);
      pages.push({ pgno: tag, data: body.subarray(at + RECORD_TAG_LENGTH, at + pageRecord) });
      at += pageRecord;
      continue;
    }
    const c = readCommit(view, at, end, fail);
    if (prev !== undefined) {
      if (c.txid !== prev.txid + 1) fail(`txid ${c.txid} at byte ${at} does not follow txid ${prev.txid}`);
      if (c.commitTime < prev.commitTime) fail(`commit time of txid ${c.txid} goes backwards`);
    }
    at += COMMIT_RECORD_LENGTH;
    prev = c;
    const tx: TxRecord = { txid: c.txid, commitTime: c.commitTime, dbSizePages: c.dbSizePages, pages };
    pages = [];
    yield tx;
  }
  if (pages.length > 0) fail(`body ends with ${pages.length} page record(s) not followed by a commit`);
}

/** Same generation and page size, each starting at the txid after the previous one ended. */
function checkChain(headers: readonly SegmentHeader[]): void {
  const first = headers[0] as SegmentHeader;
  for (let i = 1; i < headers.length; i++) {
    const h = headers[i] as SegmentHeader;
    const p = headers[i - 1] as SegmentHeader;
    const what = `segment ${h.firstTxid}..${h.lastTxid} after ${p.firstTxid}..${p.lastTxid}`;
    if (h.generation !== first.generation || h.pageSize !== first.pageSize) {
      throw chainBroken(`${what} belongs to generation ${h.generation} (page size ${h.pageSize}), not ${first.generation} (page size ${first.pageSize})`);
    }
    if (h.firstTxid !== p.lastTxid + 1) throw chainBroken(`${what}: txids must continue at ${p.lastTxid + 1}`);
    if (h.firstTime < p.lastTime) throw chainBroken(`${what}: commit times go backwards`);
  }
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

/**
 * True when joinSegments can merge this segment: zstd (any), or deflated and ending as
 * encodeSegment's `joinable` ends.
 */
export function canJoin(s: StoredSegment): boolean {
  return s.header.compression === 'zstd' || (s.header.compression === 'deflate' && isJoinable(s.stored));
}

/**
 * One segment object holding the transactions of several consecutive joinable segments, built
 * from their compressed bodies as they are: zstd frames are concatenated (a zstd stream may hold
 * several), deflate streams joined (joinDeflated); the header covers the whole chain, is of the
 * current version, and the checksum is computed anew. Nothing is decompressed or compressed again,
 * so merging costs a copy of the compressed bytes. The parts must form one chain (CHAIN_BROKEN
 * otherwise), satisfy canJoin and share one compression (RangeError otherwise). Their bodies were
 * checked when they were encoded; the merged body is checked again when it is decoded.
 */
export async function joinSegments(parts: readonly StoredSegment[]): Promise<Uint8Array> {
  if (parts.length === 0) throw new RangeError('joinSegments: nothing to join');
  checkChain(parts.map((p) => p.header));
  const compression = (parts[0] as StoredSegment).header.compression;
  if (!parts.every((p) => canJoin(p) && p.header.compression === compression)) {
    throw new RangeError('joinSegments: every part must be joinable (zstd, or deflate ending with a sync flush), all with one compression');
  }
  // One part is already the object wanted: same header, same body, checksum verified on read.
  if (parts.length === 1) return (parts[0] as StoredSegment).bytes;
  const first = (parts[0] as StoredSegment).header;
  const last = (parts[parts.length - 1] as StoredSegment).header;
  let bodyLength = 0;
  for (const p of parts) bodyLength += p.header.bodyLength;
  const header: SegmentHeader = { ...first, version: SEGMENT_FORMAT_VERSION, lastTxid: last.lastTxid, lastTime: last.lastTime, bodyLength };
  const stored = parts.map((p) => p.stored);
  return frameSegment(header, compression === 'zstd' ? stored : joinDeflated(stored));
}

function chainBroken(detail: string): PitrError {
  return new PitrError(
    'CHAIN_BROKEN',
    `segments do not form a contiguous chain: ${detail}`,
    'Pass the decoded segments of one generation in txid order, without gaps or overlaps.',
  );
}

