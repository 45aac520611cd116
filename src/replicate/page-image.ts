import { open, type FileHandle } from 'node:fs/promises';
import { PitrError, errnoCode } from '../errors.js';
import { acquireDbFile, type DbFileRef } from '../db/db-file-handle.js';
import { readWalPageSync } from '../wal/wal-frames.js';
import { readFullSync } from '../wal/wal-io.js';
import type { WalCursor } from '../wal/wal-cursor.js';

const CHUNK_PAGES_BYTES = 1 << 20;

/** Which state of the database to read: its size, and where each page's newest WAL copy is. */
export interface PageImageView {
  dbSizePages: number;
  pageSize: number;
  cursor: WalCursor | null;
  /** pgno -> newest WAL frame holding it, for frames up to the cursor. */
  pageMap: ReadonlyMap<number, number>;
}

/**
 * The database's pages as of a view: each page from the database file, with its newest WAL copy
 * (up to the view's cursor) on top. Read in 1 MiB chunks, in page order for best speed.
 *
 * Consistency is the caller's: a read transaction whose mark is at or before the cursor must be
 * held while pages are read. While it is, checkpoints copy into the database file only pages whose
 * newest copy up to the cursor is in the WAL (taken from the WAL here), so every other page in the
 * file is the version at the cursor. WAL frames are checked for salts and page number; a mismatch
 * means the WAL was restarted, which (given the held reader) only happens once everything up to the
 * cursor is in the database file and the file is frozen by the reader, so the file's copy is then
 * the right one.
 */
export class PageImage {
  private readonly chunk: Buffer;
  /** A WAL copy lands here first: a frame that fails its check must not overwrite the file's copy. */
  private readonly walPage: Buffer;
  private readonly chunkPages: number;
  private chunkFirst = 0; // first pgno in chunk; 0 = empty
  private chunkCount = 0;

  private constructor(
    private readonly dbPath: string,
    private readonly view: PageImageView,
    private readonly db: DbFileRef,
    private readonly walFh: FileHandle | undefined,
    private readonly onChunk: ((done: number) => void) | undefined,
  ) {
    this.chunkPages = Math.max(1, Math.floor(CHUNK_PAGES_BYTES / view.pageSize));
    this.chunk = Buffer.alloc(this.chunkPages * view.pageSize);
    this.walPage = Buffer.alloc(view.pageSize);
  }

  /** `onChunk` is told the pages read so far after every chunk, for progress. */
  static async open(dbPath: string, view: PageImageView, onChunk?: (done: number) => void): Promise<PageImage> {
    // The shared handle, never one of our own: closing that would drop SQLite's locks on the file.
    const db = await acquireDbFile(dbPath);
    let walFh: FileHandle | undefined;
    try {
      if (view.cursor && view.pageMap.size > 0) walFh = await open(`${dbPath}-wal`, 'r');
    } catch (err) {
      if (errnoCode(err) !== 'ENOENT') {
        await db.release();
        throw err;
      }
    }
    return new PageImage(dbPath, view, db, walFh, onChunk);
  }

  /** Page `pgno` (1..dbSizePages); the view is valid until the next call. */
  page(pgno: number): Uint8Array {
    if (this.chunkFirst === 0 || pgno < this.chunkFirst || pgno >= this.chunkFirst + this.chunkCount) {
      this.load(pgno, Math.min(this.chunkPages, this.view.dbSizePages - pgno + 1));
    }
    const at = (pgno - this.chunkFirst) * this.view.pageSize;
    return this.chunk.subarray(at, at + this.view.pageSize);
  }

  async close(): Promise<void> {
    await this.db.release();
    await this.walFh?.close();
  }

  /**
   * Fill the chunk with pages [first, first + count). Everything is read synchronously (see
   * readWalPageSync): one awaited read per page made a snapshot of a busy database take seconds,
   * and the read transaction held meanwhile blocks every checkpoint and WAL reset.
   */
  private load(first: number, count: number): void {
    const { pageSize, cursor, pageMap } = this.view;
    const walFd = this.walFh && cursor ? this.walFh.fd : undefined;
    // Where the file ends early, the rest must come from the WAL.
    const filePages = Math.floor(readFullSync(this.db.fh.fd, this.chunk, count * pageSize, (first - 1) * pageSize) / pageSize);
    for (let pgno = first; pgno < first + count; pgno++) {
      const frame = walFd === undefined ? undefined : pageMap.get(pgno);
      // False when the WAL was restarted: the file's copy is then the one (see above).
      const fromWal = frame !== undefined && readWalPageSync(walFd as number, cursor as WalCursor, frame, pgno, this.walPage);
      if (fromWal) this.chunk.set(this.walPage, (pgno - first) * pageSize);
      else if (pgno >= first + filePages) {
        throw new PitrError('WAL_INVALID', `page ${pgno} is neither in the WAL nor in ${this.dbPath} (file too short)`, 'the snapshot is retried; if it persists, report it');
      }
    }
    this.chunkFirst = first;
    this.chunkCount = count;
    this.onChunk?.(first + count - 1);
  }
}
