import { randomBytes } from 'node:crypto';
import { mkdir, open } from 'node:fs/promises';
import type { FileHandle } from 'node:fs/promises';
import path from 'node:path';

import { errnoCode } from '../../errors.js';
import { bodyChunks } from '../put-body.js';
import { TEMP_PREFIX } from '../storage-keys.js';
import { fsyncDir } from '../../util/fs-atomic.js';
import { abortError, io, ioError, throwIfAborted, type FileContext } from './file-errors.js';

// A concurrent delete() may prune the directory between our mkdir and our open; retrying a
// couple of times recreates it. More than that means something else is wrong.
const PUT_DIR_ATTEMPTS = 5;
// Bytes are written in slices of this size so an abort is noticed during a large write.
const WRITE_SLICE = 8 * 1024 * 1024;

/**
 * The steps of a durable put before its rename: a temp file next to the object's name in a
 * directory whose entry is durable up to the root, and the body written into it. Remembers the
 * directories made durable in this process, so a put into a known one costs one directory fsync.
 */
export class DurableWriter {
  private readonly durableDirs = new Set<string>();

  constructor(private readonly ctx: FileContext) {}

  /** True when `dir` was made durable by this process and not forgotten since. */
  isDurable(dir: string): boolean {
    return this.durableDirs.has(dir);
  }

  /** `dir` was removed (or may have been): the next put there makes it durable again. */
  forget(dir: string): void {
    this.durableDirs.delete(dir);
  }

  /** A new temp file, opened exclusively, in `dir` (made and made durable first). */
  async openTemp(dir: string, key: string): Promise<{ handle: FileHandle; tmp: string }> {
    for (let attempt = 1; ; attempt++) {
      try {
        await this.ensureDurableDir(dir, key);
      } catch (err) {
        // A concurrent delete pruned an emptied parent while mkdir/fsync walked it: try again.
        if (errnoCode((err as { cause?: unknown }).cause) === 'ENOENT' && attempt < PUT_DIR_ATTEMPTS) {
          this.durableDirs.delete(dir);
          continue;
        }
        throw err;
      }
      const tmp = path.join(dir, `${TEMP_PREFIX}${randomBytes(8).toString('hex')}`);
      try {
        // 'wx': a random name that already exists means something else writes here; never share it.
        return { handle: await open(tmp, 'wx'), tmp };
      } catch (err) {
        if (errnoCode(err) === 'ENOENT' && attempt < PUT_DIR_ATTEMPTS) {
          this.durableDirs.delete(dir);
          continue;
        }
        throw ioError(this.ctx, 'write', key, err);
      }
    }
  }

  /** Write all of `bytes`; returns the count. */
  async writeBytes(handle: FileHandle, bytes: Uint8Array, key: string, signal?: AbortSignal): Promise<number> {
    let offset = 0;
    while (offset < bytes.length) {
      throwIfAborted(this.ctx.url, signal, 'put', key);
      const n = Math.min(WRITE_SLICE, bytes.length - offset);
      const { bytesWritten } = await io(this.ctx, 'write', key, () => handle.write(bytes, offset, n));
      offset += bytesWritten;
    }
    return offset;
  }

  /** Write a streamed body (see PutBody); returns the count. */
  async writeStream(handle: FileHandle, body: AsyncIterable<Uint8Array>, key: string, signal?: AbortSignal): Promise<number> {
    let written = 0;
    // Each chunk is written before the next is asked for: the body may reuse its buffer (PutBody).
    for await (const bytes of bodyChunks(body, { url: this.ctx.url, key, signal, abortError: () => abortError(this.ctx.url, signal!, 'put', key) })) {
      let offset = 0;
      while (offset < bytes.length) {
        const { bytesWritten } = await io(this.ctx, 'write', key, () => handle.write(bytes, offset, bytes.length - offset), signal);
        offset += bytesWritten;
      }
      written += bytes.length;
    }
    throwIfAborted(this.ctx.url, signal, 'put', key);
    return written;
  }

  /**
   * Create `dir` if needed and make its entry durable: after a crash, a renamed-in object must
   * not vanish because the directory holding it was never recorded in its parent.
   */
  private async ensureDurableDir(dir: string, key: string): Promise<void> {
    let created: string | undefined;
    try {
      created = await mkdir(dir, { recursive: true });
    } catch (err) {
      throw ioError(this.ctx, 'write', key, err);
    }
    if (created === undefined && this.durableDirs.has(dir)) return;
    // A directory someone else (or a concurrent put) just created may not be durable yet, so an
    // unknown directory gets its whole chain fsync'd: up to the root, or up to the highest
    // directory mkdir created (which may be the root or above it).
    try {
      for (let d = dir; ; d = path.dirname(d)) {
        if (created === undefined && d === this.ctx.root) break;
        await fsyncDir(path.dirname(d));
        if (d === created || path.dirname(d) === d) break;
      }
    } catch (err) {
      throw ioError(this.ctx, 'write', key, err);
    }
    this.durableDirs.add(dir);
  }
}
