import type { FileHandle } from 'node:fs/promises';
import type { TxRecord } from '../segment/segment-types.js';
import { writeAllAt } from '../util/write-at.js';
import { mapBounded } from '../util/bounded.js';

/**
 * Memory the pending page images may pin before they are written out. Smaller than one might
 * expect: the bodies in flight are the restore's working set (the decoded-body pool warms up to
 * about twice this plus the read-ahead), and fresh memory costs page faults. Restores of the
 * bench's 280 MB database, means of 5 interleaved runs: from ~860 segments 1.69 s at 32 MiB, 1.55
 * at 12, 1.43 at 8, 1.44 at 4; latest (snapshot + ~180 segments) 1.32 / 1.22 / 1.24 / 1.17 s. A
 * page rewritten by every transaction is written once per flush, so a smaller budget writes it
 * more often; 8 MiB keeps that at one write per 8 MiB of decoded bodies.
 */
const DEFAULT_BUDGET_BYTES = 8 * 1024 * 1024;
/** Pages per write call: consecutive pages go out as one pwritev of up to this many buffers. */
const MAX_RUN_PAGES = 256;
/** Write calls in flight at once (libuv's pool has four threads). */
const WRITES_IN_FLIGHT = 4;

/**
 * Applies transactions' page images to a database file on top of a snapshot already written
 * there, with the same end result as writing every page in commit order and truncating the file
 * whenever a transaction shrank the database, but with far fewer writes:
 *
 * - Last writer wins: a page rewritten by many transactions is kept once, in memory, and written
 *   once per flush.
 * - A shrink (dbSizePages below the previous size) drops pending pages past the new end and
 *   remembers the lowest such end; the next flush truncates the file there BEFORE writing, so
 *   pages written earlier and cut off by the shrink read as zeros afterwards, exactly as a
 *   checkpoint of the shrinking transaction would leave them. Pages still pending past that end
 *   were all written after the shrink (the shrink dropped the older ones), so they belong.
 * - Flushes sort the pending page numbers and write runs of consecutive pages with pwritev,
 *   several at a time.
 *
 * Pending page images are views into decoded segment bodies; `budgetBytes` bounds the bodies they
 * keep alive (the caller reports each body with `retain`); one more budget's worth may be in
 * flight to the file while the next fills. Once a flush's writes have landed, no page of a body
 * retained before it is needed any more: `release` gets each such body back (restore recycles
 * them for the next segments it decodes).
 */
export class PageWriter {
  private pending = new Map<number, Uint8Array>();
  private retained = 0;
  /** Bodies retained since the last flush: every pending page is a view into one of them. */
  private held: Uint8Array[] = [];
  private truncateTo: number | undefined;
  /** Upper bound of the pending page numbers, so a shrink scans the pending pages only when needed. */
  private maxPending = 0;
  private writing: Promise<void> | undefined;
  private size: number;

  constructor(
    private readonly fh: FileHandle,
    private readonly pageSize: number,
    snapshotPages: number,
    private readonly budgetBytes = DEFAULT_BUDGET_BYTES,
    private readonly release: (body: Uint8Array) => void = () => {},
  ) {
    this.size = snapshotPages;
  }

  /** Database size in pages after the last applied transaction. */
  get sizePages(): number {
    return this.size;
  }

  /** Hold a decoded body whose pages may stay pending; flushes first when over budget. */
  async retain(body: Uint8Array): Promise<void> {
    if (this.retained + body.byteLength > this.budgetBytes && this.pending.size > 0) await this.flush();
    this.retained += body.byteLength;
    this.held.push(body);
  }

  /** Apply one transaction: its pages within its size, then its size. */
  apply(tx: TxRecord): void {
    for (const p of tx.pages) {
      // A frame past the transaction's end is not part of the database it commits.
      if (p.pgno <= tx.dbSizePages) {
        this.pending.set(p.pgno, p.data);
        if (p.pgno > this.maxPending) this.maxPending = p.pgno;
      }
    }
    if (tx.dbSizePages < this.size) {
      if (this.maxPending > tx.dbSizePages) {
        for (const pgno of this.pending.keys()) if (pgno > tx.dbSizePages) this.pending.delete(pgno);
        this.maxPending = tx.dbSizePages;
      }
      this.truncateTo = Math.min(this.truncateTo ?? tx.dbSizePages, tx.dbSizePages);
    }
    this.size = tx.dbSizePages;
  }

  /**
   * Start writing every pending page (after any truncation a shrink asked for) and forget them.
   * The writes run in the background while the caller decodes more segments; the next flush (or
   * finish) waits for them first, so truncations and rewrites stay in order.
   */
  async flush(): Promise<void> {
    await this.settle();
    if (this.truncateTo !== undefined) {
      await this.fh.truncate(this.truncateTo * this.pageSize);
      this.truncateTo = undefined;
    }
    const batch = this.pending;
    const bodies = this.held;
    this.pending = new Map();
    this.held = [];
    this.maxPending = 0;
    this.retained = 0;
    const pgnos = [...batch.keys()].sort((a, b) => a - b);
    const runs: { pos: number; bufs: Uint8Array[] }[] = [];
    for (let i = 0; i < pgnos.length; ) {
      const first = pgnos[i] as number;
      const bufs: Uint8Array[] = [];
      while (i < pgnos.length && pgnos[i] === first + bufs.length && bufs.length < MAX_RUN_PAGES) {
        bufs.push(batch.get(pgnos[i] as number) as Uint8Array);
        i++;
      }
      runs.push({ pos: (first - 1) * this.pageSize, bufs });
    }
    this.writing = mapBounded(runs, WRITES_IN_FLIGHT, (run) => writeAllAt(this.fh, run.bufs, run.pos)).then(() => {
      for (const b of bodies) this.release(b);
    });
    this.writing.catch(() => {}); // surfaced by the next settle()
  }

  /** Flush, wait for every write, then set the file to the final database size. */
  async finish(): Promise<void> {
    await this.flush();
    await this.settle();
    await this.fh.truncate(this.size * this.pageSize);
  }

  /** Wait for background writes; rethrows their error. Call before closing the file on any path. */
  async settle(): Promise<void> {
    const writing = this.writing;
    this.writing = undefined;
    await writing;
  }
}
