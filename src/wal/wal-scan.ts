import { open, type FileHandle } from 'node:fs/promises';
import { errnoCode } from '../errors.js';
import { cursorAtHeader, sameWalIncarnation, type WalCursor } from './wal-cursor.js';
import {
  WAL_HEADER_SIZE,
  checksumNative,
  checksumSwapped,
  frameOffset,
  frameSize,
  isNativeChecksumOrder,
  parseWalHeader,
  type WalHeader,
} from './wal-format.js';
import { acquireChunk, checkAborted, chunkFrames, readFull, releaseChunk, walIoError } from './wal-io.js';

/** One committed transaction found in the WAL: frames firstFrame..lastFrame (1-based, inclusive); lastFrame is the commit frame. pgnos[i] is the page of frame firstFrame+i (a page may repeat when a big transaction spilled). */
export interface WalCommit {
  firstFrame: number;
  lastFrame: number;
  dbSizePages: number;
  pgnos: Uint32Array;
  /** The running checksum after the commit frame: with lastFrame, the cursor just after this transaction. */
  checksum1: number;
  checksum2: number;
}

/**
 * Why a scan stopped. 'salt-mismatch' and 'checksum-mismatch' are also what a healthy WAL looks
 * like after SQLite restarted it: frames of the previous incarnation remain past the new ones
 * until overwritten. A frame with page number 0 (never valid) is reported as 'checksum-mismatch'.
 * 'limit' means opts.maxFrames was reached at a commit and more frames may follow: scan again
 * from the returned cursor.
 */
export type WalStop = 'end' | 'uncommitted-tail' | 'torn-frame' | 'checksum-mismatch' | 'salt-mismatch' | 'limit';

export type WalScanResult =
  // cursor = after the last commit found (== from when none). uncommittedFrames: valid frames of
  // this incarnation after that commit, i.e. a writer in a transaction that spilled pages into the
  // WAL (or the leftovers of one that rolled back, until the next write overwrites them).
  | { kind: 'ok'; header: WalHeader; cursor: WalCursor; commits: WalCommit[]; stop: WalStop; uncommittedFrames: number }
  | { kind: 'no-wal' } // file missing, or shorter than a header (e.g. truncated to 0 by a TRUNCATE checkpoint)
  | { kind: 'invalid-header' } // bytes there but not a valid WAL header
  | { kind: 'header-changed'; header: WalHeader }; // valid header whose salts/page size differ from `from` (the WAL was restarted)

export interface WalScanOptions {
  /** Stop at the first commit frame at or after this many newly verified frames (a transaction is never split, so every call makes progress). */
  maxFrames?: number;
  signal?: AbortSignal;
}

interface WalkParams {
  pageSize: number;
  bigEndian: boolean;
  salt1: number;
  salt2: number;
  /** Frames 1..fromFrame are already accounted for; (s0, s1) is the chain after them. */
  fromFrame: number;
  s0: number;
  s1: number;
  /** Re-read frame fromFrame and require it to be a commit frame carrying exactly (s0, s1): proves the cursor still describes this file. */
  anchor: boolean;
  /** Never look past this frame. */
  lastFrame: number;
  maxFrames: number;
  collect: boolean;
  signal: AbortSignal | undefined;
  label: string;
}

interface WalkResult {
  stop: WalStop;
  commits: WalCommit[];
  /** Last commit frame reached (fromFrame when none) and the chain after it. */
  commitFrame: number;
  commitS0: number;
  commitS1: number;
  /** Last frame that verified, commit or not, and whether it was a commit frame. */
  validFrame: number;
  validIsCommit: boolean;
}

/** The Int32 values a native word view yields for the salts as they sit (big-endian) in a frame header. */
function saltWords(salt1: number, salt2: number): Int32Array {
  const b = new Uint8Array(8);
  const dv = new DataView(b.buffer);
  dv.setUint32(0, salt1 >>> 0, false);
  dv.setUint32(4, salt2 >>> 0, false);
  return new Int32Array(b.buffer);
}

/**
 * Verify frames after p.fromFrame in file order, chunk by chunk. The next chunk's read is issued
 * before the current one is checksummed so disk/page-cache copying (libuv thread pool) overlaps
 * with verification (main thread).
 */
async function walk(fh: FileHandle, p: WalkParams): Promise<WalkResult> {
  const fsz = frameSize(p.pageSize);
  const perChunk = chunkFrames(fsz);
  const pageWords = p.pageSize >>> 2;
  const sum = isNativeChecksumOrder(p.bigEndian) ? checksumNative : checksumSwapped;
  const salts = saltWords(p.salt1, p.salt2);
  const saltW1 = salts[0]!;
  const saltW2 = salts[1]!;
  const out = new Uint32Array(2);

  let s0 = p.s0 >>> 0;
  let s1 = p.s1 >>> 0;
  let commitFrame = p.fromFrame;
  let commitS0 = s0;
  let commitS1 = s1;
  let validFrame = p.fromFrame;
  let validIsCommit = p.fromFrame > 0;
  let scanned = 0;
  const commits: WalCommit[] = [];
  let pend = new Uint32Array(p.collect ? 256 : 0);
  let pendN = 0;

  const anchorFrame = p.anchor && p.fromFrame > 0 ? p.fromFrame : 0;
  let anchorSeen = anchorFrame === 0;
  let next = anchorFrame > 0 ? anchorFrame : p.fromFrame + 1;
  if (next > p.lastFrame) {
    return { stop: 'end', commits, commitFrame, commitS0, commitS1, validFrame, validIsCommit };
  }
  const request = (first: number): number => Math.min(perChunk, p.lastFrame - first + 1) * fsz;

  let cur = acquireChunk();
  let spare: Uint8Array | null = null;
  let want = request(next);
  let inflight: Promise<number> | null = readFull(fh, cur, want, frameOffset(next, p.pageSize));
  let spareWant = 0;
  let stop: WalStop | null = null;
  try {
    while (stop === null) {
      let n: number;
      try {
        n = await inflight!;
      } catch (err) {
        throw walIoError(err, p.label);
      } finally {
        inflight = null;
      }
      checkAborted(p.signal, `scan of WAL ${p.label}`);
      const chunkFirst = next;
      const whole = Math.floor(n / fsz);
      const eof = n < want;
      next = chunkFirst + whole;
      if (!eof && next <= p.lastFrame) {
        spare ??= acquireChunk();
        spareWant = request(next);
        inflight = readFull(fh, spare, spareWant, frameOffset(next, p.pageSize));
      }

      const w = new Int32Array(cur.buffer, 0, (whole * fsz) >>> 2);
      const dv = new DataView(cur.buffer, 0, whole * fsz);
      for (let i = 0; i < whole; i++) {
        const frame = chunkFirst + i;
        const o = i * fsz;
        const wi = o >>> 2;
        if (w[wi + 2] !== saltW1 || w[wi + 3] !== saltW2) {
          stop = 'salt-mismatch';
          break;
        }
        const pgno = dv.getUint32(o, false);
        const commit = dv.getUint32(o + 4, false);
        if (frame === anchorFrame) {
          if (commit === 0 || dv.getUint32(o + 16, false) !== s0 || dv.getUint32(o + 20, false) !== s1) {
            stop = 'checksum-mismatch';
            break;
          }
          anchorSeen = true;
          continue;
        }
        sum(w, wi, wi + 2, s0, s1, out);
        sum(w, wi + 6, wi + 6 + pageWords, out[0]!, out[1]!, out);
        if (pgno === 0 || out[0] !== dv.getUint32(o + 16, false) || out[1] !== dv.getUint32(o + 20, false)) {
          stop = 'checksum-mismatch';
          break;
        }
        s0 = out[0]!;
        s1 = out[1]!;
        scanned++;
        validFrame = frame;
        validIsCommit = commit !== 0;
        if (p.collect) {
          if (pendN === pend.length) {
            const grown = new Uint32Array(pend.length * 2);
            grown.set(pend);
            pend = grown;
          }
          pend[pendN++] = pgno;
        }
        if (commit !== 0) {
          if (p.collect) {
            commits.push({ firstFrame: commitFrame + 1, lastFrame: frame, dbSizePages: commit, pgnos: pend.slice(0, pendN), checksum1: s0, checksum2: s1 });
            pendN = 0;
          }
          commitFrame = frame;
          commitS0 = s0;
          commitS1 = s1;
          if (scanned >= p.maxFrames) {
            const lastInFile = i === whole - 1 && eof && n === whole * fsz;
            stop = lastInFile ? 'end' : 'limit';
            break;
          }
        }
      }
      if (stop === null) {
        if (!anchorSeen && (eof || next > p.lastFrame)) stop = 'torn-frame';
        else if (next > p.lastFrame) stop = 'end';
        else if (eof) stop = n !== whole * fsz ? 'torn-frame' : validFrame > commitFrame ? 'uncommitted-tail' : 'end';
      }
      if (stop === null) {
        const t = cur;
        cur = spare!;
        spare = t;
        want = spareWant;
      }
    }
  } finally {
    // A read still in flight targets a pooled buffer: let it land before the buffer is reused.
    if (inflight !== null) await (inflight as Promise<number>).catch(() => 0);
    releaseChunk(cur);
    if (spare !== null) releaseChunk(spare);
  }
  return { stop, commits, commitFrame, commitS0, commitS1, validFrame, validIsCommit };
}

async function readHeader(fh: FileHandle, label: string): Promise<WalHeader | 'no-wal' | 'invalid-header'> {
  const hb = new Uint8Array(WAL_HEADER_SIZE);
  let n: number;
  try {
    n = await readFull(fh, hb, WAL_HEADER_SIZE, 0);
  } catch (err) {
    throw walIoError(err, label);
  }
  if (n < WAL_HEADER_SIZE) return 'no-wal';
  return parseWalHeader(hb) ?? 'invalid-header';
}

async function scanOpen(fh: FileHandle, from: WalCursor | null, opts: WalScanOptions, label: string): Promise<WalScanResult> {
  checkAborted(opts.signal, `scan of WAL ${label}`);
  const header = await readHeader(fh, label);
  if (header === 'no-wal') return { kind: 'no-wal' };
  if (header === 'invalid-header') return { kind: 'invalid-header' };
  if (from !== null && !sameWalIncarnation(header, from)) return { kind: 'header-changed', header };
  const start = from ?? cursorAtHeader(header);
  if (start.frame === 0 && (start.checksum1 !== header.checksum1 || start.checksum2 !== header.checksum2)) {
    // Same salts but a different header checksum: this cursor was not taken from this file.
    return { kind: 'ok', header, cursor: { ...start }, commits: [], stop: 'checksum-mismatch', uncommittedFrames: 0 };
  }
  const r = await walk(fh, {
    pageSize: header.pageSize,
    bigEndian: header.bigEndian,
    salt1: header.salt1,
    salt2: header.salt2,
    fromFrame: start.frame,
    s0: start.checksum1,
    s1: start.checksum2,
    anchor: true,
    lastFrame: Infinity,
    maxFrames: opts.maxFrames ?? Infinity,
    collect: true,
    signal: opts.signal,
    label,
  });
  const cursor: WalCursor = { ...start, frame: r.commitFrame, checksum1: r.commitS0, checksum2: r.commitS1 };
  return { kind: 'ok', header, cursor, commits: r.commits, stop: r.stop, uncommittedFrames: Math.max(0, r.validFrame - r.commitFrame) };
}

/** scanWal over an already-open file handle (the caller keeps ownership of it). */
export async function scanWalHandle(fh: FileHandle, from: WalCursor | null, opts: WalScanOptions = {}): Promise<WalScanResult> {
  return scanOpen(fh, from, opts, '(open file handle)');
}

/** Verify and find committed transactions after `from` (or from the header when from is null). Never throws for WAL content problems (they are stop reasons); throws PitrError only for I/O errors other than ENOENT. Options: maxFrames to bound one call's work. */
export async function scanWal(path: string, from: WalCursor | null, opts: WalScanOptions = {}): Promise<WalScanResult> {
  checkAborted(opts.signal, `scan of WAL ${path}`);
  let fh: FileHandle;
  try {
    fh = await open(path, 'r');
  } catch (err) {
    if (errnoCode(err) === 'ENOENT') return { kind: 'no-wal' };
    throw walIoError(err, path);
  }
  try {
    return await scanOpen(fh, from, opts, path);
  } finally {
    await fh.close().catch(() => undefined);
  }
}

/** verifyWalPrefix over an already-open file handle (the caller keeps ownership of it). */
export async function verifyWalPrefixHandle(fh: FileHandle, cursor: WalCursor, label = '(open file handle)'): Promise<boolean> {
  const header = await readHeader(fh, label);
  if (typeof header === 'string' || !sameWalIncarnation(header, cursor)) return false;
  if (cursor.frame === 0) return header.checksum1 === cursor.checksum1 && header.checksum2 === cursor.checksum2;
  const r = await walk(fh, {
    pageSize: header.pageSize,
    bigEndian: header.bigEndian,
    salt1: header.salt1,
    salt2: header.salt2,
    fromFrame: 0,
    s0: header.checksum1,
    s1: header.checksum2,
    anchor: false,
    lastFrame: cursor.frame,
    maxFrames: Infinity,
    collect: false,
    signal: undefined,
    label,
  });
  // A cursor always sits just after a commit frame; a prefix ending mid-transaction is not the one we recorded.
  return r.validFrame === cursor.frame && r.validIsCommit && r.commitS0 === cursor.checksum1 >>> 0 && r.commitS1 === cursor.checksum2 >>> 0;
}

/** True when frames 1..cursor.frame of the WAL at path still have cursor's salts and chain to exactly cursor's checksum (used to prove continuity after an agent restart). */
export async function verifyWalPrefix(path: string, cursor: WalCursor): Promise<boolean> {
  let fh: FileHandle;
  try {
    fh = await open(path, 'r');
  } catch (err) {
    if (errnoCode(err) === 'ENOENT') return false;
    throw walIoError(err, path);
  }
  try {
    return await verifyWalPrefixHandle(fh, cursor, path);
  } finally {
    await fh.close().catch(() => undefined);
  }
}
