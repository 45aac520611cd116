import { open, stat } from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import { PitrError, errnoCode, isPitrError } from '../../errors.js';
import type { SourceDb, CheckpointResult } from '../../db/source-db.js';
import { readDbFileInfo } from '../../db/db-file.js';
import { filesChanged } from '../../db/file-guard.js';
import { scanWal, verifyWalPrefix, type WalCommit, type WalScanResult } from '../../wal/wal-scan.js';
import { readWalPages } from '../../wal/wal-frames.js';
import { WAL_FRAME_HEADER_SIZE, frameOffset, frameSize } from '../../wal/wal-format.js';
import { cursorAtHeader, sameWalIncarnation, type WalCursor } from '../../wal/wal-cursor.js';
import { SegmentBodyBuilder } from '../../segment/segment-builder.js';
import { newGenerationId } from '../../segment/object-names.js';
import type { Spool } from '../spool.js';
import { savePosition, type Position } from './position.js';
import type { Logger } from '../../log.js';

/** The capture chain: what has been spooled, and where that leaves us in the WAL. */
export interface ChainState {
  generation: string;
  lastTxid: number;
  lastTime: number;
  cursor: WalCursor | null;
  dbSizePages: number;
}

/** A consistent view for a snapshot: the chain state plus where each page's newest copy is. */
export interface SnapshotView {
  generation: string;
  txid: number;
  commitTime: number;
  dbSizePages: number;
  pageSize: number;
  cursor: WalCursor | null;
  /** pgno -> newest WAL frame holding it, for frames up to the cursor. */
  pageMap: Map<number, number>;
}

export interface PassResult {
  transactions: number;
  bytes: number;
  /** Set when continuity is lost mid-run: the agent must start a new generation. */
  broken?: string;
  checkpoint?: CheckpointResult;
}

export interface CaptureOptions {
  dbPath: string;
  stateDir: string;
  /** PASSIVE checkpoint once the WAL holds this many frames (all spooled). */
  checkpointFrames: number;
  /** TRUNCATE checkpoint once the WAL file is this large (0 = never). */
  truncateBytes: number;
  /**
   * Reset the WAL under a brief write lock once the captured part of the WAL is this large and
   * PASSIVE checkpoints alone cannot restart it (0 = never). See resetWal.
   */
  resetBytes: number;
  log: Logger;
}

/** A pass that finds nothing new this long after the last capture counts as a quiet moment. */
export const QUIET_MS = 250;

/** How long a WAL reset waits for the app's write transaction to end (pitr's thread blocks meanwhile). */
const RESET_LOCK_WAIT_MS = 20;
/** How long the reset's checkpoint waits for one the app is running (the app's writers wait meanwhile). */
const RESET_CHECKPOINT_WAIT_MS = 10;
const RESET_FINAL_CHECKPOINT_WAIT_MS = 100;
/** Most frames a WAL reset spools plus backfills under the write lock (1,024 frames: a few ms). */
const RESET_MAX_FRAMES = 1024;
/**
 * Past this many times resetBytes, a WAL reset may do up to RESET_FORCE_MAX_FRAMES under the lock
 * (64 MiB of 4 KiB pages: measured 60-270 ms of app wait at 8,000 commits/s on 2 cores).
 */
const RESET_FORCE_FACTOR = 4;
const RESET_FORCE_MAX_FRAMES = 16384;
/**
 * A reset is tried only when capture was at most this many times its frame limit behind the WAL's
 * end at the pass's checkpoint: its catch-up rounds shrink the gap by about the ratio of the app's
 * write rate to capture's, so a larger one rarely closes, and trying slowed capture behind a
 * flat-out writer (bench overhead suite: 74-92% of commits not yet shipped when the writer
 * stopped, against 65-74% with resets off and 53-74% with this check).
 */
const RESET_BEHIND_FACTOR = 4;
/** Least time between two resets of one WAL incarnation. */
const RESET_RETRY_MS = 1000;
/** Tries per pass; each one that gives up costs the app a wait of a few µs. */
const RESET_ATTEMPTS = 3;

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
 * Capture: turns committed WAL frames into durable spool entries, one txid per commit.
 * Every method must be called under the agent's capture lock (one at a time).
 */
export class Capture {
  readonly walPath: string;
  state: ChainState;
  private readonly pageMap = new Map<number, number>();
  private lastCaptureAt = 0;
  /**
   * Set by advanceRead, cleared when a catch-up has read the WAL to its end: while set, the held
   * reader's mark may be past what is spooled, so the mark must not move again (see pass).
   */
  private markAhead = false;
  /** The WAL incarnation (salts) and time of the last complete reset (see resetWorthTrying). */
  private lastReset: { salt1: number; salt2: number; at: number } | undefined;
  /** Current cut size of spool entries: SPOOL_ENTRY_BYTES, less after the disk was full. */
  private entryBytes = SPOOL_ENTRY_BYTES;
  /** Valid frames after the last commit at the last scan: a writer inside a transaction. */
  private uncommittedFrames = 0;
  private readonly identity: { dev: number; ino: number };
  /** A finished segment body's buffer, which the next one is built in (see SegmentBodyBuilder.buffer); dropped when writes pause. */
  private spareBody: Uint8Array | undefined;

  private constructor(
    private readonly db: SourceDb,
    private readonly spool: Spool,
    private readonly opts: CaptureOptions,
    state: ChainState,
  ) {
    this.walPath = `${opts.dbPath}-wal`;
    this.state = state;
    this.identity = { dev: db.info.dev, ino: db.info.ino };
  }

  /**
   * Open the chain at startup. Continues the saved position when continuity is proven (same
   * file, same WAL incarnation, its frames up to the saved cursor unchanged, nothing newer in the
   * spool or the replicas); otherwise starts a new generation, whose first snapshot the caller
   * must take (see `needsSnapshot`) before anything else.
   */
  static async start(
    db: SourceDb,
    spool: Spool,
    opts: CaptureOptions,
    position: Position | null,
    knownMaxTxid: number,
  ): Promise<{ capture: Capture; newGeneration: boolean; reason: string }> {
    const walPath = `${opts.dbPath}-wal`;
    let scan: WalScanResult | undefined;
    // The first read transaction has no predecessor protecting the WAL, so a restart could
    // overwrite frames while we scan: scan until the header is the same before and after.
    for (let attempt = 0; attempt < 10; attempt++) {
      db.advanceRead();
      const before = await readHeaderBytes(walPath);
      scan = await scanWal(walPath, null);
      const after = await readHeaderBytes(walPath);
      if (before === after) break;
      scan = undefined;
    }
    if (!scan) throw new PitrError('WAL_INVALID', `the WAL of ${opts.dbPath} kept being restarted while pitr read it`, 'retry; if it persists, report it');
    if (scan.kind === 'invalid-header') {
      throw new PitrError('WAL_INVALID', `${walPath} has an invalid header`, 'check that the file is a SQLite WAL of this database');
    }
    const commits = scan.kind === 'ok' ? scan.commits : [];
    const cursor = scan.kind === 'ok' ? scan.cursor : null;
    // What a checkpoint may have put in the file's header so far: its header now, and every page 1
    // in the WAL up to our read mark (see FileGuard).
    db.guard.noteCurrentHeader();
    await notePageOneFrames(db, walPath, commits);
    const lastCommit = commits[commits.length - 1];
    // Without commits in the WAL the size comes from the file header, read now, under the read
    // transaction: the header read when the database was opened may predate a checkpoint.
    const dbSizePages = lastCommit ? lastCommit.dbSizePages : (await readDbFileInfo(opts.dbPath)).pageCount;

    const reason = await continuityProblem(db, walPath, position, knownMaxTxid, scan);
    if (reason === null && position) {
      const capture = new Capture(db, spool, opts, {
        generation: position.generation,
        lastTxid: position.lastTxid,
        lastTime: position.lastTime,
        cursor: position.cursor,
        dbSizePages: position.dbSizePages,
      });
      const oldFrames = position.cursor?.frame ?? 0;
      capture.mapCommits(commits.filter((c) => c.lastFrame <= oldFrames));
      const fresh = commits.filter((c) => c.firstFrame > oldFrames);
      if (fresh.length > 0 && scan.kind === 'ok') {
        await capture.spoolCommits(fresh, scan.cursor);
      }
      return { capture, newGeneration: false, reason: 'continuity proven' };
    }
    const txid = Math.max(knownMaxTxid, position?.lastTxid ?? 0) + 1;
    const capture = new Capture(db, spool, opts, {
      generation: newGenerationId(),
      lastTxid: txid,
      lastTime: Math.max(Date.now(), position?.lastTime ?? 0),
      cursor,
      dbSizePages,
    });
    capture.mapCommits(commits);
    return { capture, newGeneration: true, reason: reason ?? 'no saved position' };
  }

  /**
   * One capture pass: move the read mark, read newly committed frames, spool them durably, and
   * checkpoint when the WAL is long and fully spooled.
   */
  async pass(): Promise<PassResult> {
    let r: PassResult;
    try {
      r = await this.passSteps();
    } catch (err) {
      // The files changed under pitr (see FileGuard): whatever this pass spooled before it noticed
      // is durable and saved; nothing more may be read or checkpointed through these connections.
      if (!isPitrError(err, 'DB_FILES_CHANGED')) throw err;
      return { transactions: 0, bytes: 0, broken: err.message };
    }
    // Quiet is measured from the end of the last pass that captured or reset, not from its start:
    // a long pass, or a reset that held the app's writers (they then sleep in their busy handler),
    // left the next pass seeing no commit for a while, and the TRUNCATE it then took stalled an app
    // that was only waiting for pitr (measured: 200-730 ms, behind a flat-out writer).
    if (r.transactions > 0 || r.checkpoint?.mode === 'RESET') this.lastCaptureAt = Date.now();
    return r;
  }

  private async passSteps(): Promise<PassResult> {
    const changed = this.db.guard.problem(!this.markAhead);
    if (changed) return { transactions: 0, bytes: 0, broken: changed };
    const total: PassResult = { transactions: 0, bytes: 0 };
    const add = (r: PassResult): boolean => addPass(total, r);
    // Invariant (see SourceDb): every frame up to the held reader's mark is spooled before the
    // reader moves again. So every advanceRead() below is followed by a full catch-up, and a pass
    // that failed before its catch-up finished (the spool's disk full, say) left the mark ahead:
    // catch up first, or this advance could begin a reader that no longer protects those frames.
    if (this.markAhead && !add(await this.catchUp())) return total;
    this.advanceRead();
    if (!add(await this.catchUp())) return total;
    const quiet = total.transactions === 0 && Date.now() - this.lastCaptureAt >= QUIET_MS;
    if (total.transactions > 0) this.lastCaptureAt = Date.now();
    if (quiet) this.spareBody = undefined;
    // TRUNCATE in a quiet moment only: it needs the app's write lock for its checkpoint, and under
    // steady writes it would only make the app wait. Its safety does not depend on the moment.
    if (quiet && this.opts.truncateBytes > 0 && (await fileSize(this.walPath)) >= this.opts.truncateBytes) {
      if (!add(await this.truncateWal())) return total;
    } else if (this.state.cursor && this.state.cursor.frame >= this.opts.checkpointFrames) {
      // Move the mark to the end of what is spooled so the checkpoint may backfill all of it.
      this.advanceRead();
      if (!add(await this.catchUp())) return total;
      try {
        total.checkpoint = this.db.checkpoint('PASSIVE', 0);
      } catch (err) {
        this.checkpointFailed(err);
      }
      if (total.checkpoint && !total.checkpoint.busy && total.checkpoint.checkpointedFrames === total.checkpoint.walFrames) {
        // Fully backfilled: a reader begun now uses no WAL frames, so it does not stop the app's
        // next write from restarting the WAL from the start (which keeps the WAL file small
        // without any blocking checkpoint). Catch up again: the new mark may be past the spool.
        this.advanceRead();
        if (!add(await this.catchUp())) return total;
      } else if (this.resetWorthTrying(total.checkpoint)) {
        if (!add(await this.resetWal())) return total;
      }
    }
    return total;
  }

  /**
   * Whether resetWal may go ahead this pass: the WAL is past resetBytes, no snapshot pins a
   * reader, and capture was close to the WAL's end at the pass's checkpoint. Far behind (a writer
   * outrunning capture) a reset could not succeed, and its extra syncs and catch-up rounds would
   * only slow capture further.
   */
  private resetWorthTrying(checkpoint: CheckpointResult | undefined): boolean {
    if (this.opts.resetBytes <= 0 || this.walBytes() < this.opts.resetBytes || this.db.pinned()) return false;
    if (!checkpoint || checkpoint.busy || checkpoint.walFrames < 0) return false;
    // After a complete reset the app's next commit normally restarts the WAL; now and then it
    // does not at once (measured at 1,000 commits/s: resets every pass for ~170 ms), and each
    // retry makes the app wait again for nothing new. Give that WAL a moment.
    const last = this.lastReset;
    if (last && this.state.cursor?.salt1 === last.salt1 && this.state.cursor.salt2 === last.salt2 && Date.now() - last.at < RESET_RETRY_MS) return false;
    const behind = checkpoint.walFrames - (this.state.cursor?.frame ?? 0);
    return behind <= RESET_BEHIND_FACTOR * this.resetMaxFrames();
  }

  /** Most frames a reset may leave to do under the lock (see RESET_FORCE_FACTOR). */
  private resetMaxFrames(): number {
    return this.walBytes() >= RESET_FORCE_FACTOR * this.opts.resetBytes ? RESET_FORCE_MAX_FRAMES : RESET_MAX_FRAMES;
  }

  /** Bytes of the WAL up to the capture cursor (its current incarnation). */
  private walBytes(): number {
    const frames = this.state.cursor?.frame ?? 0;
    return frames === 0 ? 0 : 32 + frames * (24 + this.db.info.pageSize);
  }

  /**
   * Let SQLite restart a WAL that writes never pause long enough to restart on its own: a PASSIVE
   * checkpoint cannot backfill the frames committed after it started, and a WAL restarts only when
   * fully backfilled, so under steady writes it grows without bound (and the app's commits slow
   * down appending to it). Under SQLite's write lock the WAL cannot grow: catch up the commits
   * since the last pass, end our readers (everything is spooled, and no writer can restart the WAL
   * while we hold the lock), backfill all of it, and begin a reader that, the WAL being fully
   * backfilled, uses no WAL frame. The app's next write then restarts the WAL from the start. That
   * reader still pins what follows: it blocks any further backfill, so no second restart can happen
   * before we read the new frames (see SourceDb).
   *
   * The app's writers wait while we hold the lock, so we first look at how much is left to spool
   * and backfill and let go at once when it is more than a moment's work (capture is behind a
   * writer that never pauses; a later pass tries again). Likewise when the lock stays busy, an app
   * reader holds an old snapshot, or the app is running a checkpoint of its own.
   */
  private async resetWal(): Promise<PassResult> {
    const total: PassResult = { transactions: 0, bytes: 0 };
    // Far past the threshold, capture has been behind a fast writer for a while: accept a longer
    // wait for the app rather than a WAL that keeps growing.
    const maxFrames = this.resetMaxFrames();
    await this.db.syncDbFile();
    for (let attempt = 0; attempt < RESET_ATTEMPTS; attempt++) {
      // Catch up, then move the mark to the end and backfill to it, so that what is left to do
      // under the lock is only what the app commits from here on.
      if (!addPass(total, await this.catchUp())) return total;
      this.advanceRead();
      try {
        this.db.checkpoint('PASSIVE', 0);
      } catch (err) {
        this.checkpointFailed(err);
      }
      const locked = await this.resetUnderLock(maxFrames);
      if (locked) {
        addPass(total, locked);
        return total;
      }
    }
    // The mark may be past what is spooled: catch up before the next advanceRead (the invariant).
    addPass(total, await this.catchUp());
    return total;
  }

  /** resetWal's part under the write lock; null when it did not go ahead (nothing changed). */
  private async resetUnderLock(maxFrames: number): Promise<PassResult | null> {
    const lock = this.db.lockWriters(RESET_LOCK_WAIT_MS);
    if (!lock) return null;
    const start = performance.now();
    try {
      // Backfills nothing new (our reader's mark bounds it, and resetWal backfilled up to it) but
      // reports the WAL's frame count and how much of it is backfilled. The wait is for a
      // checkpoint the app may be running after its last commit.
      const probe = await this.checkpointPassive(RESET_CHECKPOINT_WAIT_MS);
      const spooled = this.state.cursor?.frame ?? 0;
      if (probe.busy || probe.walFrames < spooled || probe.walFrames - spooled + (probe.walFrames - probe.checkpointedFrames) > maxFrames) {
        return null;
      }
      // Raw: the app is waiting, and copying is several times faster than compressing.
      const got = await this.catchUp(true);
      // Our readers are all that keeps the WAL from restarting once the lock goes: end them only
      // when that catch-up read the WAL to its end (markAhead cleared), never on a partial one.
      if (got.broken || this.markAhead || !this.db.releaseReads()) return got;
      let checkpoint: CheckpointResult | undefined;
      try {
        // A longer wait here: a checkpoint the app started may now backfill everything, and the
        // app is busy with it, not waiting on our lock. Giving up would waste the reset.
        checkpoint = await this.checkpointPassive(RESET_FINAL_CHECKPOINT_WAIT_MS);
      } catch (err) {
        this.checkpointFailed(err);
      }
      // Every frame is spooled and none can be added while we hold the lock: the invariant holds.
      this.advanceRead();
      this.markAhead = false;
      if (!checkpoint) return got;
      if (!checkpoint.busy && this.state.cursor) this.lastReset = { salt1: this.state.cursor.salt1, salt2: this.state.cursor.salt2, at: Date.now() };
      return { ...got, checkpoint: { ...checkpoint, mode: 'RESET', durationMs: performance.now() - start } };
    } finally {
      lock.release();
    }
  }

  /**
   * A PASSIVE checkpoint that, while another connection holds SQLite's checkpoint lock (the app's
   * auto-checkpoint, run after its commits), tries again every millisecond for up to waitMs.
   * SQLite never waits for that lock itself, whatever the busy timeout ("even if there is a
   * busy-handler configured, it will not be invoked"), so the waits these calls were given before
   * were never waited: one try, and a reset was given up whenever the app was checkpointing.
   */
  private async checkpointPassive(waitMs: number): Promise<CheckpointResult> {
    const start = performance.now();
    for (;;) {
      const r = this.db.checkpoint('PASSIVE', 0);
      if (!r.busy || performance.now() - start >= waitMs) return r;
      await sleep(1);
    }
  }

  /**
   * A checkpoint that failed (the app holds a lock, an I/O error) is skipped and tried again on a
   * later pass; one refused because the files changed under pitr ends the pass (see pass()).
   */
  private checkpointFailed(err: unknown): void {
    if (isPitrError(err, 'DB_FILES_CHANGED')) throw err;
    this.opts.log.debug('checkpoint skipped', { err });
  }

  /** Move the held read mark to the WAL's end (SourceDb.advanceRead); a full catch-up must follow. */
  private advanceRead(): void {
    // The invariant (see SourceDb): never move the mark past frames not yet spooled.
    if (this.markAhead) throw new PitrError('WAL_INVALID', `capture of ${this.opts.dbPath} has not read the WAL up to its read mark yet`, 'the next capture pass reads it first; report this if it repeats');
    this.db.advanceRead();
    this.markAhead = true;
  }

  /**
   * Scan from the cursor to the last commit and spool what is new, following WAL restarts.
   * raw: spool uncompressed (faster, for when the app waits on us).
   */
  private async catchUp(raw = false): Promise<PassResult> {
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

  /**
   * Shrink a WAL that grew past truncateBytes (SQLite only reuses it from the start, never shrinks
   * it), without ever letting go of pitr's read transaction outside SQLite's write lock: that rule
   * is what makes pitr's checkpoints unable to lose a frame (see SourceDb), whatever the timing.
   * First a WAL reset (under the write lock: capture everything, backfill everything, begin a
   * reader that uses no WAL frame), then a TRUNCATE checkpoint with that reader held. A reader
   * holds off every backfill, and TRUNCATE empties the WAL only when it is backfilled in full: it
   * succeeds only on a WAL holding nothing the reset did not capture; a commit that slipped in
   * after the lock was released makes it answer busy (nothing done), and a later quiet moment
   * tries again.
   */
  private async truncateWal(): Promise<PassResult> {
    // A writer in a transaction (a large one spills pages into the WAL long before it commits, and
    // looks quiet meanwhile) holds the write lock the reset needs: do not make pitr wait for it.
    if (this.uncommittedFrames > 0) return { transactions: 0, bytes: 0 };
    const total = await this.resetWal();
    if (total.broken || total.checkpoint?.mode !== 'RESET' || total.checkpoint.busy) return total;
    try {
      total.checkpoint = this.db.checkpoint('TRUNCATE', 0);
    } catch (err) {
      this.checkpointFailed(err);
    }
    return total;
  }

  /**
   * Throws DB_FILES_CHANGED when the files at the database's paths are not what capture holds and
   * has read (FileGuard): for work done outside a pass, such as a snapshot, to check its result.
   */
  assertFiles(): void {
    const problem = this.db.guard.problem(!this.markAhead);
    if (problem) throw filesChanged(problem);
  }

  /** The consistent view a snapshot needs; call under the capture lock and pin the read first. */
  snapshotView(): SnapshotView {
    return {
      generation: this.state.generation,
      txid: this.state.lastTxid,
      commitTime: this.state.lastTime,
      dbSizePages: this.state.dbSizePages,
      pageSize: this.db.info.pageSize,
      cursor: this.state.cursor ? { ...this.state.cursor } : null,
      pageMap: new Map(this.pageMap),
    };
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

  private mapCommits(commits: readonly WalCommit[]): void {
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

  private async spoolCommits(commits: readonly WalCommit[], after: WalCursor, raw = false): Promise<{ transactions: number; bytes: number }> {
    const pageSize = this.db.info.pageSize;
    // Commit time = when we read the commit frame: an upper bound on the true commit time.
    const time = Math.max(Date.now(), this.state.lastTime);
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
          if (pgno === 1) this.db.guard.notePageOne(data);
          const c = run[ci] as WalCommit;
          if (++inCommit < c.pgnos.length) return undefined;
          // The commit's last frame: the transaction is whole.
          txid++;
          builder.commit(c.dbSizePages, txid, time);
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

/** Adds r's counts to total, and its checkpoint and break when it has them; false when r broke the chain. */
function addPass(total: PassResult, r: PassResult): boolean {
  total.transactions += r.transactions;
  total.bytes += r.bytes;
  if (r.checkpoint) total.checkpoint = r.checkpoint;
  if (r.broken) total.broken = r.broken;
  return !r.broken;
}

/** True when err (or an error it wraps) is a full disk or quota. */
function isDiskFull(err: unknown): boolean {
  for (let e: unknown = err; e !== undefined && e !== null; e = (e as { cause?: unknown }).cause) {
    const code = errnoCode(e);
    if (code === 'ENOSPC' || code === 'EDQUOT') return true;
    if (typeof e !== 'object') break;
  }
  return false;
}

async function fileSize(path: string): Promise<number> {
  try {
    return (await stat(path)).size;
  } catch (err) {
    if (errnoCode(err) === 'ENOENT') return 0;
    throw err;
  }
}

/** Tell the guard every page-1 image among `commits`' frames in the WAL at walPath. */
async function notePageOneFrames(db: SourceDb, walPath: string, commits: readonly WalCommit[]): Promise<void> {
  const frames: number[] = [];
  for (const c of commits) c.pgnos.forEach((pgno, i) => pgno === 1 && frames.push(c.firstFrame + i));
  if (frames.length === 0) return;
  const page = Buffer.alloc(db.info.pageSize);
  const fh = await open(walPath, 'r');
  try {
    for (const f of frames) {
      const { bytesRead } = await fh.read(page, 0, page.length, frameOffset(f, db.info.pageSize) + WAL_FRAME_HEADER_SIZE);
      if (bytesRead === page.length) db.guard.notePageOne(page);
    }
  } finally {
    await fh.close();
  }
}

async function readHeaderBytes(walPath: string): Promise<string> {
  try {
    const fh = await open(walPath, 'r');
    try {
      const buf = Buffer.alloc(32);
      const { bytesRead } = await fh.read(buf, 0, 32, 0);
      return buf.subarray(0, bytesRead).toString('hex');
    } finally {
      await fh.close();
    }
  } catch (err) {
    if (errnoCode(err) === 'ENOENT') return 'missing';
    throw err;
  }
}

/** Why the saved position cannot be continued, or null when continuity is proven. */
async function continuityProblem(
  db: SourceDb,
  walPath: string,
  position: Position | null,
  knownMaxTxid: number,
  scan: WalScanResult,
): Promise<string | null> {
  if (!position) return 'no saved position';
  if (position.pageSize !== db.info.pageSize) return 'the page size changed';
  if (position.db.dev !== db.info.dev || position.db.ino !== db.info.ino) return 'the database file was replaced';
  if (knownMaxTxid > position.lastTxid) return 'the spool or a replica is ahead of the saved position (unclean stop)';
  if (!position.cursor) return 'the WAL was empty when the agent stopped, so changes made while it was down cannot be proven complete';
  if (scan.kind !== 'ok') return 'the WAL was checkpointed and removed while the agent was down';
  if (!sameWalIncarnation(scan.header, position.cursor)) return 'the WAL was restarted while the agent was down';
  if (scan.cursor.frame < position.cursor.frame) return 'the WAL is shorter than the saved position';
  if (!(await verifyWalPrefix(walPath, position.cursor))) return 'the WAL frames before the saved position changed';
  return null;
}
