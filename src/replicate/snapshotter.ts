import type { Logger } from '../log.js';
import { formatDuration } from '../util/duration.js';
import { open, type FileHandle } from 'node:fs/promises';
import { PitrError, errnoCode } from '../errors.js';
import { acquireDbFile, type DbFileRef } from '../db/db-file-handle.js';
import type { ReadPin } from '../db/source-db.js';
import { readWalPageSync } from '../wal/wal-frames.js';
import { readFullSync } from '../wal/wal-io.js';
import { snapshotChunks } from '../segment/index.js';
import type { SnapshotEntry } from '../catalog/catalog.js';
import type { WalCursor } from '../wal/wal-cursor.js';
import type { SnapshotView } from './capture/capture.js';
import type { Spool } from './spool.js';

const CHUNK_PAGES_BYTES = 1 << 20;

/**
 * Write a full page image of the database as of `view` into the spool, streaming.
 *
 * Consistency: `pin` holds the read transaction whose mark is at or before view's cursor. While it
 * is held, checkpoints copy into the database file only pages whose newest copy up to the cursor
 * is in the WAL (we take those from the WAL), so every other page in the file is the version at
 * the cursor. The WAL frames we read are checked for salts and page number; a mismatch means the
 * WAL was restarted, which (given the pin) only happens once everything up to the cursor is in the
 * database file and the file is frozen by the pin, so the file's copy is then the right one.
 */
export async function writeSnapshotToSpool(args: {
  dbPath: string;
  view: SnapshotView;
  pin: ReadPin;
  spool: Spool;
  signal?: AbortSignal;
  /** Told the pages read so far (of view.dbSizePages) after every chunk of them, for progress. */
  onPages?: (done: number) => void;
  /** Throws when the files changed while they were read: the snapshot is then dropped (Spool.addSnapshot). */
  check?: () => void;
}): Promise<SnapshotEntry> {
  const { view, pin, spool } = args;
  let db: DbFileRef | undefined;
  let walFh: FileHandle | undefined;
  try {
    // The shared handle, never one of our own: closing that would drop SQLite's locks on the file.
    db = await acquireDbFile(args.dbPath);
    if (view.cursor && view.pageMap.size > 0) {
      try {
        walFh = await open(`${args.dbPath}-wal`, 'r');
      } catch (err) {
        if (errnoCode(err) !== 'ENOENT') throw err;
      }
    }
    const pageSize = view.pageSize;
    const chunkPages = Math.max(1, Math.floor(CHUNK_PAGES_BYTES / pageSize));
    const chunk = Buffer.alloc(chunkPages * pageSize);
    // A WAL copy lands here first: a frame that fails its check must not overwrite the file's copy.
    const walPage = Buffer.alloc(pageSize);
    let chunkFirst = 0; // first pgno in chunk; 0 = empty
    let chunkCount = 0;
    const file = db.fh;

    /**
     * Fill `chunk` with pages [first, first + count): the file's copy, overlaid with the WAL's
     * newest copy where the page map has one. Everything is read synchronously (see
     * readWalPageSync): one awaited read per page made a snapshot of a busy database take seconds,
     * and the pin held meanwhile blocks every checkpoint and WAL reset.
     */
    const walFd = walFh && view.cursor ? walFh.fd : undefined;
    const loadChunk = (first: number, count: number): void => {
      // Where the file ends early, the rest must come from the WAL.
      const filePages = Math.floor(readFullSync(file.fd, chunk, count * pageSize, (first - 1) * pageSize) / pageSize);
      for (let pgno = first; pgno < first + count; pgno++) {
        const at = (pgno - first) * pageSize;
        const frame = walFd === undefined ? undefined : view.pageMap.get(pgno);
        // False when the WAL was restarted: the file's copy is then the one (see above).
        const fromWal = frame !== undefined && readWalPageSync(walFd as number, view.cursor as WalCursor, frame, pgno, walPage);
        if (fromWal) chunk.set(walPage, at);
        else if (pgno >= first + filePages) {
          throw new PitrError('WAL_INVALID', `page ${pgno} is neither in the WAL nor in ${args.dbPath} (file too short)`, 'the snapshot is retried; if it persists, report it');
        }
      }
      chunkFirst = first;
      chunkCount = count;
      args.onPages?.(first + count - 1);
    };

    const nextPage = (pgno: number): Uint8Array => {
      if (chunkFirst === 0 || pgno < chunkFirst || pgno >= chunkFirst + chunkCount) {
        loadChunk(pgno, Math.min(chunkPages, view.dbSizePages - pgno + 1));
      }
      const at = (pgno - chunkFirst) * pageSize;
      return chunk.subarray(at, at + pageSize);
    };

    // Lent chunks straight into the spool file: no copy and no stream queue in between.
    const chunks = snapshotChunks(
      {
        generation: view.generation,
        pageSize,
        txid: view.txid,
        commitTime: view.commitTime,
        dbSizePages: view.dbSizePages,
        compression: 'zstd',
      },
      nextPage,
      args.signal ? { signal: args.signal } : {},
    );
    return await spool.addSnapshot(view.generation, view.txid, view.commitTime, chunks, args.check);
  } finally {
    pin.release();
    await db?.release();
    await walFh?.close();
  }
}

/** How often a long snapshot logs its progress. */
const SNAPSHOT_PROGRESS_LOG_MS = 30_000;

/** An onPages for writeSnapshotToSpool: a snapshot of a large database takes minutes, so say how far it is now and then. */
export function progressLogger(totalPages: number, started: number, log: Logger): (done: number) => void {
  let loggedAt = started;
  return (done) => {
    const now = Date.now();
    if (now - loggedAt < SNAPSHOT_PROGRESS_LOG_MS) return;
    loggedAt = now;
    log.info('snapshot in progress', {
      pages: done,
      of: totalPages,
      done: `${Math.floor((100 * done) / totalPages)}%`,
      elapsed: formatDuration(now - started),
    });
  };
}
