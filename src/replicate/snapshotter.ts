import type { Logger } from '../log.js';
import { formatDuration } from '../util/duration.js';
import type { ReadPin } from '../db/source-db.js';
import { snapshotChunks } from '../segment/index.js';
import type { SnapshotEntry } from '../catalog/catalog.js';
import type { SnapshotView } from './capture/capture.js';
import type { Spool } from './spool.js';
import { PageImage } from './page-image.js';

/**
 * Write a full page image of the database as of `view` into the spool, streaming. `pin` holds the
 * read transaction whose mark is at or before view's cursor, which is what makes the pages read a
 * consistent image (see PageImage); it is released when this settles.
 */
export async function writeSnapshotToSpool(args: {
  dbPath: string;
  view: SnapshotView;
  pin: ReadPin;
  spool: Spool;
  signal?: AbortSignal;
  /** Told the pages read so far (of view.dbSizePages) after every chunk of them, for progress. */
  onPages?: (done: number) => void;
  /** Told each page as it goes into the snapshot, in page order (a new generation's fingerprint). */
  onPage?: (pgno: number, data: Uint8Array) => void;
  /** Throws when the files changed while they were read: the snapshot is then dropped (Spool.addSnapshot). */
  check?: () => void;
}): Promise<SnapshotEntry> {
  const { view, pin, spool } = args;
  let image: PageImage | undefined;
  try {
    image = await PageImage.open(args.dbPath, view, args.onPages);
    const pages = image;
    const onPage = args.onPage;
    // Lent chunks straight into the spool file: no copy and no stream queue in between.
    const chunks = snapshotChunks(
      {
        generation: view.generation,
        pageSize: view.pageSize,
        txid: view.txid,
        commitTime: view.commitTime,
        dbSizePages: view.dbSizePages,
        compression: 'zstd',
      },
      onPage
        ? (pgno) => {
            const data = pages.page(pgno);
            onPage(pgno, data);
            return data;
          }
        : (pgno) => pages.page(pgno),
      args.signal ? { signal: args.signal } : {},
    );
    return await spool.addSnapshot(view.generation, view.txid, view.commitTime, chunks, args.check);
  } finally {
    pin.release();
    await image?.close();
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
