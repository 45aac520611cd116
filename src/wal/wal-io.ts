import { readSync } from 'node:fs';
import type { FileHandle } from 'node:fs/promises';
import { PitrError, errnoCode } from '../errors.js';

/**
 * Size of one read. Large enough that syscall and promise overhead vanish next to the checksum,
 * small enough that two of them (double buffering) stay cheap to keep around.
 */
export const WAL_CHUNK_BYTES = 4 << 20;

// Scans run every time the WAL grows; reusing chunk buffers keeps a steady trickle of small
// scans from allocating (and zero-filling) 8 MiB each time.
const POOL_MAX = 4;
const pool: ArrayBuffer[] = [];

/** A chunk buffer on its own ArrayBuffer (byteOffset 0, so every frame is 8-byte aligned). */
export function acquireChunk(): Uint8Array {
  return new Uint8Array(pool.pop() ?? new ArrayBuffer(WAL_CHUNK_BYTES));
}

/** Return a buffer from acquireChunk; the caller must have no read in flight into it. */
export function releaseChunk(buf: Uint8Array): void {
  if (pool.length < POOL_MAX && buf.byteLength === WAL_CHUNK_BYTES) pool.push(buf.buffer as ArrayBuffer);
}

/** Bytes of whole frames that fit in one chunk (at least one frame). */
export function chunkFrames(frameBytes: number): number {
  return Math.max(1, Math.floor(WAL_CHUNK_BYTES / frameBytes));
}

/** Fill buf[0, length) from `position`, stopping early only at end of file; returns bytes read. */
export async function readFull(fh: FileHandle, buf: Uint8Array, length: number, position: number): Promise<number> {
  let done = 0;
  // pread may legally return short before EOF; only a zero-byte read means the file ends here.
  while (done < length) {
    const { bytesRead } = await fh.read(buf, done, length - done, position + done);
    if (bytesRead === 0) break;
    done += bytesRead;
  }
  return done;
}

/** readFull, synchronously (for page-cache reads of a local file, see readWalPageSync). */
export function readFullSync(fd: number, buf: Uint8Array, length: number, position: number): number {
  let done = 0;
  while (done < length) {
    const n = readSync(fd, buf, done, length - done, position + done);
    if (n === 0) break;
    done += n;
  }
  return done;
}

/** Wrap an fs error as the PitrError callers are promised. */
export function walIoError(err: unknown, what: string): PitrError {
  if (err instanceof PitrError) return err;
  const code = errnoCode(err);
  return new PitrError(
    'WAL_INVALID',
    `cannot read WAL ${what}${code === undefined ? '' : ` (${code})`}`,
    'check that the file exists, is a regular file and is readable by the pitr agent',
    { cause: err },
  );
}

/** Throw PitrError 'ABORTED' when the signal has fired. */
export function checkAborted(signal: AbortSignal | undefined, what: string): void {
  if (signal?.aborted) {
    throw new PitrError('ABORTED', `${what} was aborted`, undefined, { cause: signal.reason });
  }
}
