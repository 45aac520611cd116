import { open } from 'node:fs/promises';
import { PitrError, isDiskFull } from '../../errors.js';
import type { SourceDb } from '../../db/source-db.js';
import { scanWal, type WalCommit } from '../../wal/wal-scan.js';
import { readWalPages } from '../../wal/wal-frames.js';
import { frameSize } from '../../wal/wal-format.js';
import { cursorAtHeader, type WalCursor } from '../../wal/wal-cursor.js';
import { SegmentBodyBuilder } from '../../segment/segment-builder.js';
import type { Spool } from '../spool.js';
import { savePosition, type Position } from './position.js';
import type { PassResult } from './pass-result.js';
import type { CaptureOptions } from './capture-options.js';
import type { Fingerprint } from '../fingerprint/fingerprint.js';

/** The capture chain: what has been spooled, and where that leaves us in the WAL. */
export interface ChainState {
  generation: string;
  lastTxid: number;
  lastTime: number;
  cursor: WalCursor | null;
  dbSizePages: number;
}

/** Largest uncompressed spool entry; bigger passes are cut at a transaction boundary. */
const SPOOL_ENTRY_BYTES = 32 << 20;
/**
 * After the spool's disk refused an entry, capture tries smaller ones, down to this (a single
 * larger transaction is still one entry): on a nearly full disk, progress comes in what fits.
 */
const MIN_SPOOL_ENTRY_BYTES = 256 << 10;
/** Largest segment body buffer kept for the next one (normal bodies stay near SPOOL_ENTRY_BYTES). */
const SPARE_BODY_MAX_BYTES = 2 * SPOOL_ENTRY_BYTES;

/**
 * The WAL pump: reads committed frames from the WAL, from the chain's cursor on, into durable
 * spool entries, one txid per commit, and saves the position after each. It owns the chain state
 * and the held read mark (advanceRead). Called under the agent's capture lock, through Capture.
 */
export class WalPump {
  readonly walPath: string;
  state: ChainState;
  readonly pageMap = new Map<number, number>();
  /**
   * Set by advanceRead, cleared when a catch-up has read the WAL to its end: while set, the held
   * reader's mark may be past what is spooled, so the mark must not move again (see Capture.passSteps).
   */
  markAhead = false;
  /** Current cut size of spool entries: SPOOL_ENTRY_BYTES, less after the disk was full. */
  private entryBytes = SPOOL_ENTRY_BYTES;
  /** Valid frames after the last commit at the last scan: a writer inside a transaction. */
  uncommittedFrames = 0;
  private readonly identity: { dev: number; ino: number };
  /** A finished segment body's buffer, which the next one is built in (see SegmentBodyBuilder.buffer); dropped when writes pause. */
  spareBody: Uint8Array | undefined;

  constructor(
    private readonly db: SourceDb,
    private readonly spool: Spool,
    private readonly opts: CaptureOptions,
    state: ChainState,
    /** Told every page spooled, and journaled per spool entry (see Fingerprint). */
    readonly fingerprint: Fingerprint,
  ) {
    this.walPath = `${opts.dbPath}-wal`;
    this.state = state;
    this.identity = { dev: db.info.dev, ino: db.info.ino };
  }

  /** Move the held read mark to the WAL's end (SourceDb.advanceRead); a full catch-up must follow. */
  advanceRead(): void {
    // The invariant (see SourceDb): never move the mark past frames not yet spooled.
    if (this.markAhead) throw new PitrError('WAL_INVALID', `capture of ${this.opts.dbPath} has not read the WAL up to its read mark yet`, 'the next capture pass reads it first; report this if it repeats');
    this.db.advanceRead();
    this.markAhead = true;
  }

  /**
   * Scan from the cursor to the last commit and spool what is new, following WAL restarts.
   * raw: spool uncompressed (faster, for when the app waits on us).
   */
  async catchUp(raw = false): Promise<PassResult> {
    let transactions = 0;
    let bytes = 0;
    // Bounded pieces: each scan reads about one spool entry's worth and spoolCommits saves the
    // position after it, so a pass that fails halfway (the spool's disk full) keeps what it did.
    const maxFrames = Math.max(1, Math.floor(this.entryBytes / frameSize(this.db.info.pageSize)));
    // A restarted WAL is followed at once; more restarts than this in one catch-up means the
    // header is being rewritten under us: leave it to the next pass (markAhead stays set).
    let restarts = 0;
    while (restarts < 16) {
      const res = await scanWal(this.walPath, this.state.cursor, { maxFrames });
      if (res.kind === 'no-wal' || res.kind === 'header-changed') {
        // Only SQLite may have restarted or truncated the WAL: the -wal at the path must still be
        // the file our connections use, or this "restart" is a new file (an operator's restore).
        this.db.assertFiles();
      }
      if (res.kind === 'no-wal') {
        // Truncated by a checkpoint. Our read transaction kept that from happening before we
        // had read every frame, so the chain continues with the next WAL header.
        if (this.state.cursor) {
          this.db.guard.walRestarted();
          this.state.cursor = null;
          this.pageMap.clear();
          await this.persist();
        }
        this.markAhead = false;
        break;
      }
      if (res.kind === 'invalid-header') break; // a header being written; the next event retries
      if (res.kind === 'header-changed') {
        if (res.header.pageSize !== this.db.info.pageSize) {
          return { transactions, bytes, broken: `the page size changed to ${res.header.pageSize}` };
        }
        // Restarted WAL: safe to follow for the same reason as truncation (see SourceDb).
        this.state.cursor = cursorAtHeader(res.header);
        this.pageMap.clear();
        this.db.guard.walRestarted();
        await this.persist();
        restarts++;
        continue;
      }
      this.uncommittedFrames = res.uncommittedFrames;
      if (res.commits.length > 0) {
        const r = await this.spoolCommits(res.commits, res.cursor, raw);
        transactions += r.transactions;
        bytes += r.bytes;
      } else if (!this.state.cursor) {
        this.state.cursor = res.cursor;
        await this.persist();
      }
      if (res.stop !== 'limit') {
        this.markAhead = false;
        break;
      }
    }
    return { transactions, bytes };
  }

  /** Save the position (after the spool entries it describes are durable). */
  async persist(): Promise<void> {
    const p: Position = {
      version: 1,
      generation: this.state.generation,
      lastTxid: this.state.lastTxid,
      lastTime: this.state.lastTime,
      cursor: this.state.cursor,
      dbSizePages: this.state.dbSizePages,
      pageSize: this.db.info.pageSize,
      db: this.identity,
    };
    await savePosition(this.opts.stateDir, p);
  }

  mapCommits(commits: readonly WalCommit[]): void {
    for (const c of commits) {
      for (let i = 0; i < c.pgnos.length; i++) this.pageMap.set(c.pgnos[i] as number, c.firstFrame + i);
    }
  }

  /**
   * Spool.addSegment, sizing the next entries by how it went: after the disk refused one, a
   * quarter of the size (what a nearly full disk still takes); after a success, back up by 2x.
   */
  private async spoolEntry(...args: Parameters<Spool['addSegment']>): Promise<void> {
    try {
      await this.spool.addSegment(...args);
    } catch (err) {
      if (isDiskFull(err)) this.entryBytes = Math.max(MIN_SPOOL_ENTRY_BYTES, this.entryBytes >>> 2);
      throw err;
    }
    this.entryBytes = Math.min(SPOOL_ENTRY_BYTES, this.entryBytes * 2);
  }

  async spoolCommits(commits: readonly WalCommit[], after: WalCursor, raw = false): Promise<{ transactions: number; bytes: number }> {
    const pageSize = this.db.info.pageSize;
    // Commit time = when we read the commit frame: an upper bound on the true commit time.
    const time = Math.max(Date.now(), this.state.lastTime);
    // Pages fed to the fingerprint by a call that failed before their entry was written.
    this.fingerprint.discard();
    const fh = await open(this.walPath, 'r');
    let bytes = 0;
    let txid = this.state.lastTxid;
    try {
      // What is left to build, so each builder starts big enough for its entry: an entry is cut
      // after the commit that takes it past entryBytes, so at most that plus one commit.
      let left = 0;
      let largest = 0;
      for (const c of commits) {
        const n = SegmentBodyBuilder.bodyBytes(pageSize, c.pgnos.length, 1);
        left += n;
        largest = Math.max(largest, n);
      }
      const entryBytes = this.entryBytes;
      const nextBuilder = (): SegmentBodyBuilder => new SegmentBodyBuilder(pageSize, Math.min(left, entryBytes + largest), this.spareBody);
      let builder = nextBuilder();
      /** Commits of `commits` in entries already durable. */
      let done = 0;
      const flush = async (): Promise<void> => {
        if (builder.txCount === 0) return;
        const body = builder.finish();
        // Journaled before the entry is written: after a kill the fingerprint is never behind the spool.
        await this.fingerprint.record(builder.firstTxid as number, builder.lastTxid as number, time);
        try {
          await this.spoolEntry(
            {
              generation: this.state.generation,
              pageSize,
              firstTxid: builder.firstTxid as number,
              lastTxid: builder.lastTxid as number,
              firstTime: builder.firstTime as number,
              lastTime: builder.lastTime as number,
            },
            body,
            { compress: !raw },
          );
        } catch (err) {
          this.fingerprint.discard();
          throw err;
        }
        this.fingerprint.applied();
        // The spool has compressed or copied the body by now: the next builder may overwrite it. Not
        // one grown for a single huge transaction: under steady writes no quiet moment drops it, and
        // the agent would hold that transaction's size for as long as the writes go on.
        this.spareBody = builder.buffer.length <= SPARE_BODY_MAX_BYTES ? builder.buffer : undefined;
        bytes += body.length;
        left -= body.length;
        // The entry is durable: capture stands after its last transaction now, whatever becomes of
        // the rest of this call (a full disk): a retry continues from here, not from the start.
        const n = builder.txCount;
        const last = commits[done + n - 1] as WalCommit;
        this.mapCommits(commits.slice(done, done + n));
        done += n;
        this.state = {
          ...this.state,
          lastTxid: builder.lastTxid as number,
          lastTime: time,
          cursor: { ...after, frame: last.lastFrame, checksum1: last.checksum1, checksum2: last.checksum2 },
          dbSizePages: last.dbSizePages,
        };
        builder = nextBuilder();
        await this.persist();
        await this.fingerprint.compactIfDue();
      };
      // One read per run of adjacent commits (normally the whole pass), not one per commit: at
      // thousands of small commits a second, a thread-pool round trip per commit was the agent's
      // largest item on the JS thread.
      for (let from = 0; from < commits.length; ) {
        let to = from + 1;
        while (to < commits.length && (commits[to] as WalCommit).firstFrame === (commits[to - 1] as WalCommit).lastFrame + 1) to++;
        const run = commits.slice(from, to);
        const pgnos = new Uint32Array(run.reduce((n, c) => n + c.pgnos.length, 0));
        let at = 0;
        for (const c of run) {
          pgnos.set(c.pgnos, at);
          at += c.pgnos.length;
        }
        let ci = 0;
        let inCommit = 0;
        await readWalPages(fh, after, (run[0] as WalCommit).firstFrame, pgnos, (pgno, data) => {
          builder.page(pgno, data);
          this.fingerprint.page(pgno, data);
          if (pgno === 1) this.db.guard.notePageOne(data);
          const c = run[ci] as WalCommit;
          if (++inCommit < c.pgnos.length) return undefined;
          // The commit's last frame: the transaction is whole.
          txid++;
          builder.commit(c.dbSizePages, txid, time);
          this.fingerprint.commit(c.dbSizePages);
          ci++;
          inCommit = 0;
          // A promise only when an entry is full, so the other pages cost no await.
          return builder.byteLength >= entryBytes ? flush() : undefined;
        });
        from = to;
      }
      await flush();
    } finally {
      await fh.close();
    }
    return { transactions: commits.length, bytes };
  }
}
