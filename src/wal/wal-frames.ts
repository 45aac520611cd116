import { readSync, readvSync } from 'node:fs';
import type { FileHandle } from 'node:fs/promises';
import { PitrError } from '../errors.js';
import type { WalCursor } from './wal-cursor.js';
import { WAL_FRAME_HEADER_SIZE, frameOffset, frameSize } from './wal-format.js';
import { acquireChunk, chunkFrames, readFull, releaseChunk, walIoError } from './wal-io.js';

type FrameCursor = Pick<WalCursor, 'salt1' | 'salt2' | 'pageSize'>;

function frameChanged(frame: number, why: string): PitrError {
  return new PitrError(
    'WAL_INVALID',
    `WAL frame ${frame} changed since it was scanned (${why})`,
    'the WAL was restarted or rewritten underneath the reader; capture must rescan and, if continuity is lost, start a new generation',
  );
}

function isThenable(v: unknown): v is PromiseLike<unknown> {
  return typeof v === 'object' && v !== null && typeof (v as { then?: unknown }).then === 'function';
}

/** Read page data of frames [first, last] (1-based inclusive) in chunks, checking each frame header's salts against the cursor's and that its pgno equals expected pgnos (throws PitrError 'WAL_INVALID' if a frame changed since it was scanned). Calls onPage(pgno, data) in frame order; `data` is a view valid only during the call (copy it if you keep it). */
export async function readWalPages(
  fh: FileHandle,
  cursor: FrameCursor,
  firstFrame: number,
  pgnos: Uint32Array,
  onPage: (pgno: number, data: Uint8Array) => void | Promise<void>,
): Promise<void> {
  const count = pgnos.length;
  if (count === 0) return;
  const { pageSize } = cursor;
  const salt1 = cursor.salt1 >>> 0;
  const salt2 = cursor.salt2 >>> 0;
  const fsz = frameSize(pageSize);
  const perChunk = chunkFrames(fsz);
  const lastFrame = firstFrame + count - 1;
  const request = (first: number): number => Math.min(perChunk, lastFrame - first + 1);

  let cur = acquireChunk();
  let spare: Uint8Array | null = null;
  let next = firstFrame;
  let frames = request(next);
  let inflight: Promise<number> | null = readFull(fh, cur, frames * fsz, frameOffset(next, pageSize));
  let spareFrames = 0;
  try {
    while (next <= lastFrame) {
      let n: number;
      try {
        n = await inflight!;
      } catch (err) {
        throw walIoError(err, `frames ${firstFrame}..${lastFrame}`);
      } finally {
        inflight = null;
      }
      const chunkFirst = next;
      if (n < frames * fsz) throw frameChanged(chunkFirst + Math.floor(n / fsz), 'the file ends before it');
      next = chunkFirst + frames;
      // Prefetch the next chunk while onPage consumes this one (it may be slow, e.g. compressing).
      if (next <= lastFrame) {
        spare ??= acquireChunk();
        spareFrames = request(next);
        inflight = readFull(fh, spare, spareFrames * fsz, frameOffset(next, pageSize));
      }
      const dv = new DataView(cur.buffer, 0, frames * fsz);
      for (let i = 0; i < frames; i++) {
        const frame = chunkFirst + i;
        const o = i * fsz;
        if (dv.getUint32(o + 8, false) !== salt1 || dv.getUint32(o + 12, false) !== salt2) {
          throw frameChanged(frame, 'salts differ');
        }
        const pgno = dv.getUint32(o, false);
        const expected = pgnos[frame - firstFrame]!;
        if (pgno !== expected) throw frameChanged(frame, `holds page ${pgno}, expected ${expected}`);
        const r = onPage(pgno, cur.subarray(o + WAL_FRAME_HEADER_SIZE, o + fsz));
        if (isThenable(r)) await r;
      }
      if (next <= lastFrame) {
        const t = cur;
        cur = spare!;
        spare = t;
        frames = spareFrames;
      }
    }
  } finally {
    // A read still in flight targets a pooled buffer: let it land before the buffer is reused.
    if (inflight !== null) await (inflight as Promise<number>).catch(() => 0);
    releaseChunk(cur);
    if (spare !== null) releaseChunk(spare);
  }
}

/** readWalPageSync's frame header: a snapshot reads one per WAL page it takes. */
const FRAME_HEADER_SCRATCH = new Uint8Array(WAL_FRAME_HEADER_SIZE);

/**
 * Read one frame's page (frame n, 1-based) into buf, verifying salts and pgno; returns false if the
 * frame no longer holds that page under those salts (or the file ends before it). Synchronous: a
 * snapshot overlays thousands of WAL pages, 4 KiB reads of a local file the app has just written
 * (page-cache hits, microseconds each); awaited through the thread pool, each queued behind
 * capture's and the shipper's fsyncs, and a 64 MB snapshot took 2-3 s under a flat-out writer, all
 * of it pinning the WAL.
 */
export function readWalPageSync(fd: number, cursor: FrameCursor, frame: number, pgno: number, buf: Uint8Array): boolean {
  const { pageSize } = cursor;
  if (buf.length < pageSize) throw new RangeError(`page buffer is ${buf.length} bytes, WAL page size is ${pageSize}`);
  const hdr = FRAME_HEADER_SCRATCH; // a synchronous function: no other call can be using it
  const page = buf.subarray(0, pageSize);
  const pos = frameOffset(frame, pageSize);
  try {
    let done = readvSync(fd, [hdr, page], pos);
    // Short reads before EOF are legal: finish piecewise; EOF shows as a short count.
    while (done < WAL_FRAME_HEADER_SIZE + pageSize) {
      const into = done < WAL_FRAME_HEADER_SIZE ? hdr.subarray(done) : page.subarray(done - WAL_FRAME_HEADER_SIZE);
      const n = readSync(fd, into, 0, into.length, pos + done);
      if (n === 0) return false;
      done += n;
    }
  } catch (err) {
    throw walIoError(err, `frame ${frame}`);
  }
  return frameHolds(hdr, cursor, pgno);
}

/** Whether a frame header names page pgno under the cursor's salts. */
function frameHolds(hdr: Uint8Array, cursor: FrameCursor, pgno: number): boolean {
  const dv = new DataView(hdr.buffer, hdr.byteOffset, hdr.byteLength);
  return dv.getUint32(0, false) === pgno >>> 0 && dv.getUint32(8, false) === cursor.salt1 >>> 0 && dv.getUint32(12, false) === cursor.salt2 >>> 0;
}

