/**
 * SQLite WAL file format (https://www.sqlite.org/fileformat2.html#walformat): header and frame
 * layout, and the cumulative checksum. Pure functions over byte buffers; no I/O.
 */

export const WAL_HEADER_SIZE = 32;
export const WAL_FRAME_HEADER_SIZE = 24;
/** Magic with little-endian checksums; the low bit set (0x377f0683) means big-endian checksums. */
export const WAL_MAGIC_LE = 0x377f0682;
export const WAL_MAGIC_BE = 0x377f0683;
/** The only WAL format version SQLite has ever written (3.7.0). */
export const WAL_FORMAT_VERSION = 3007000;
export const WAL_MIN_PAGE_SIZE = 512;
export const WAL_MAX_PAGE_SIZE = 65536;

export interface WalHeader {
  bigEndian: boolean;
  formatVersion: number;
  pageSize: number;
  checkpointSeq: number;
  salt1: number;
  salt2: number;
  checksum1: number;
  checksum2: number;
}

/** The 24-byte header in front of each frame's page. */
export interface WalFrameHeader {
  pgno: number;
  /** Database size in pages after the commit; nonzero only on a commit frame. */
  dbSizePages: number;
  salt1: number;
  salt2: number;
  checksum1: number;
  checksum2: number;
}

/** True when typed-array reads of this machine are little-endian (every platform Node ships on, but do not assume). */
export const MACHINE_LITTLE_ENDIAN = new Uint8Array(new Uint32Array([1]).buffer)[0] === 1;

/** Whether a Uint32Array/Int32Array view reads checksum words in the order the WAL asks for. */
export function isNativeChecksumOrder(bigEndian: boolean): boolean {
  return bigEndian !== MACHINE_LITTLE_ENDIAN;
}

/** Decode the WAL header page-size field; returns 0 when it is not a legal page size. */
export function decodeWalPageSize(field: number): number {
  // SQLite writes 65536 as-is in the WAL header (the "1" encoding belongs to the database header
  // and the wal-index); accept both so a file from any writer parses.
  const size = field === 1 ? WAL_MAX_PAGE_SIZE : field;
  if (size < WAL_MIN_PAGE_SIZE || size > WAL_MAX_PAGE_SIZE || (size & (size - 1)) !== 0) return 0;
  return size;
}

/** Parse and verify a WAL header (magic, version, page size, header checksum). Returns null when invalid. */
export function parseWalHeader(buf: Uint8Array): WalHeader | null {
  if (buf.length < WAL_HEADER_SIZE) return null;
  const dv = new DataView(buf.buffer, buf.byteOffset, WAL_HEADER_SIZE);
  const magic = dv.getUint32(0, false);
  if (magic !== WAL_MAGIC_LE && magic !== WAL_MAGIC_BE) return null;
  const bigEndian = magic === WAL_MAGIC_BE;
  const formatVersion = dv.getUint32(4, false);
  if (formatVersion !== WAL_FORMAT_VERSION) return null;
  const pageSize = decodeWalPageSize(dv.getUint32(8, false));
  if (pageSize === 0) return null;
  const checksum1 = dv.getUint32(24, false);
  const checksum2 = dv.getUint32(28, false);
  const out = new Uint32Array(2);
  walChecksum(bigEndian, buf, 0, 24, 0, 0, out);
  if (out[0] !== checksum1 || out[1] !== checksum2) return null;
  return {
    bigEndian,
    formatVersion,
    pageSize,
    checkpointSeq: dv.getUint32(12, false),
    salt1: dv.getUint32(16, false),
    salt2: dv.getUint32(20, false),
    checksum1,
    checksum2,
  };
}

/** Read the frame header at buf[offset, offset+24) without validating it. */
export function parseWalFrameHeader(buf: Uint8Array, offset = 0): WalFrameHeader {
  const dv = new DataView(buf.buffer, buf.byteOffset + offset, WAL_FRAME_HEADER_SIZE);
  return {
    pgno: dv.getUint32(0, false),
    dbSizePages: dv.getUint32(4, false),
    salt1: dv.getUint32(8, false),
    salt2: dv.getUint32(12, false),
    checksum1: dv.getUint32(16, false),
    checksum2: dv.getUint32(20, false),
  };
}

/**
 * Checksum words [start, end) of an Int32Array view whose element order already matches the
 * WAL's checksum byte order. Int32 (not Uint32) keeps every value a small integer so V8 compiles
 * the loop to plain 32-bit adds; `| 0` is the u32 wrap.
 */
export function checksumNative(w: Int32Array, start: number, end: number, s0: number, s1: number, out: Uint32Array): void {
  let a = s0 | 0;
  let b = s1 | 0;
  let i = start;
  // Two words per step is the algorithm; unrolling to four halves the loop overhead.
  const end4 = start + ((end - start) & ~3);
  for (; i < end4; i += 4) {
    a = (a + w[i]! + b) | 0;
    b = (b + w[i + 1]! + a) | 0;
    a = (a + w[i + 2]! + b) | 0;
    b = (b + w[i + 3]! + a) | 0;
  }
  for (; i < end; i += 2) {
    a = (a + w[i]! + b) | 0;
    b = (b + w[i + 1]! + a) | 0;
  }
  out[0] = a;
  out[1] = b;
}

/** As checksumNative, for a WAL whose checksum byte order is the opposite of the machine's. */
export function checksumSwapped(w: Int32Array, start: number, end: number, s0: number, s1: number, out: Uint32Array): void {
  let a = s0 | 0;
  let b = s1 | 0;
  for (let i = start; i < end; i += 2) {
    const x = w[i]!;
    const y = w[i + 1]!;
    a = (a + ((x << 24) | ((x & 0xff00) << 8) | ((x >>> 8) & 0xff00) | (x >>> 24)) + b) | 0;
    b = (b + ((y << 24) | ((y & 0xff00) << 8) | ((y >>> 8) & 0xff00) | (y >>> 24)) + a) | 0;
  }
  out[0] = a;
  out[1] = b;
}

/** Continue SQLite's WAL checksum over buf[offset, offset+length) (length multiple of 8) from (s0,s1); writes result into out[0], out[1]. */
export function walChecksum(
  bigEndian: boolean,
  buf: Uint8Array,
  offset: number,
  length: number,
  s0: number,
  s1: number,
  out: Uint32Array,
): void {
  if (length % 8 !== 0) throw new RangeError(`WAL checksum length must be a multiple of 8, got ${length}`);
  if (offset < 0 || offset + length > buf.length) throw new RangeError('WAL checksum range is outside the buffer');
  const start = buf.byteOffset + offset;
  if ((start & 3) === 0) {
    const w = new Int32Array(buf.buffer, start, length >>> 2);
    if (isNativeChecksumOrder(bigEndian)) checksumNative(w, 0, w.length, s0, s1, out);
    else checksumSwapped(w, 0, w.length, s0, s1, out);
    return;
  }
  // Unaligned input cannot take a word view; DataView is slower but reads any offset.
  const dv = new DataView(buf.buffer, start, length);
  let a = s0 | 0;
  let b = s1 | 0;
  const le = !bigEndian;
  for (let i = 0; i < length; i += 8) {
    a = (a + dv.getInt32(i, le) + b) | 0;
    b = (b + dv.getInt32(i + 4, le) + a) | 0;
  }
  out[0] = a;
  out[1] = b;
}

/** Bytes of frame n (1-based) start at this file offset. */
export function frameOffset(frame: number, pageSize: number): number {
  return WAL_HEADER_SIZE + (frame - 1) * (WAL_FRAME_HEADER_SIZE + pageSize);
}

/** Size in bytes of one frame (header + page). */
export function frameSize(pageSize: number): number {
  return WAL_FRAME_HEADER_SIZE + pageSize;
}

/** Encode a WAL header (for tests and tools that build WAL files); computes its checksum. */
export function encodeWalHeader(h: Omit<WalHeader, 'checksum1' | 'checksum2'>): Uint8Array {
  if (decodeWalPageSize(h.pageSize) === 0) throw new RangeError(`invalid WAL page size ${h.pageSize}`);
  const buf = new Uint8Array(WAL_HEADER_SIZE);
  const dv = new DataView(buf.buffer);
  dv.setUint32(0, h.bigEndian ? WAL_MAGIC_BE : WAL_MAGIC_LE, false);
  dv.setUint32(4, h.formatVersion >>> 0, false);
  dv.setUint32(8, h.pageSize >>> 0, false);
  dv.setUint32(12, h.checkpointSeq >>> 0, false);
  dv.setUint32(16, h.salt1 >>> 0, false);
  dv.setUint32(20, h.salt2 >>> 0, false);
  const out = new Uint32Array(2);
  walChecksum(h.bigEndian, buf, 0, 24, 0, 0, out);
  dv.setUint32(24, out[0]!, false);
  dv.setUint32(28, out[1]!, false);
  return buf;
}

/**
 * Encode one frame (header + page) continuing the checksum chain in `chain` ([s0, s1] of the
 * previous frame, or the header's checksum for frame 1); `chain` is updated to this frame's.
 */
export function encodeWalFrame(
  h: Pick<WalHeader, 'bigEndian' | 'pageSize' | 'salt1' | 'salt2'>,
  chain: Uint32Array,
  pgno: number,
  dbSizePages: number,
  page: Uint8Array,
): Uint8Array {
  if (page.length !== h.pageSize) throw new RangeError(`page is ${page.length} bytes, WAL page size is ${h.pageSize}`);
  const buf = new Uint8Array(WAL_FRAME_HEADER_SIZE + h.pageSize);
  const dv = new DataView(buf.buffer);
  dv.setUint32(0, pgno >>> 0, false);
  dv.setUint32(4, dbSizePages >>> 0, false);
  dv.setUint32(8, h.salt1 >>> 0, false);
  dv.setUint32(12, h.salt2 >>> 0, false);
  buf.set(page, WAL_FRAME_HEADER_SIZE);
  walChecksum(h.bigEndian, buf, 0, 8, chain[0]!, chain[1]!, chain);
  walChecksum(h.bigEndian, buf, WAL_FRAME_HEADER_SIZE, h.pageSize, chain[0]!, chain[1]!, chain);
  dv.setUint32(16, chain[0]!, false);
  dv.setUint32(20, chain[1]!, false);
  return buf;
}

/** One frame to encode with encodeWal: dbSizePages nonzero marks the commit frame. */
export interface WalFrameInput {
  pgno: number;
  dbSizePages: number;
  page: Uint8Array;
}

/** Encode a whole WAL file: header followed by the frames, checksums chained. */
export function encodeWal(h: Omit<WalHeader, 'checksum1' | 'checksum2'>, frames: readonly WalFrameInput[]): Uint8Array {
  const header = encodeWalHeader(h);
  const fsz = frameSize(h.pageSize);
  const out = new Uint8Array(WAL_HEADER_SIZE + frames.length * fsz);
  out.set(header, 0);
  const hdv = new DataView(header.buffer);
  const chain = new Uint32Array([hdv.getUint32(24, false), hdv.getUint32(28, false)]);
  frames.forEach((f, i) => {
    out.set(encodeWalFrame(h, chain, f.pgno, f.dbSizePages, f.page), WAL_HEADER_SIZE + i * fsz);
  });
  return out;
}
