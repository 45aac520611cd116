import { stat } from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import { errnoCode, isPitrError } from '../../errors.js';
import type { SourceDb, CheckpointResult } from '../../db/source-db.js';
import { addPass, type PassResult } from './pass-result.js';
import type { WalPump } from './wal-pump.js';
import type { CaptureOptions } from './capture-options.js';

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

/**
 * The checkpointer: which checkpoint a pass takes once its catch-up is done (PASSIVE, TRUNCATE, or
 * a WAL reset under the app's write lock), and the dance that keeps pitr's own checkpoints from
 * ever losing a frame capture has not spooled (see SourceDb). Called through Capture, under the
 * agent's capture lock.
 */
export class Checkpointer {
  /** The WAL incarnation (salts) and time of the last complete reset (see resetWorthTrying). */
  private lastReset: { salt1: number; salt2: number; at: number } | undefined;

  constructor(
    private readonly db: SourceDb,
    private readonly pump: WalPump,
    private readonly opts: CaptureOptions,
  ) {}

  /** The checkpoint a pass takes after its catch-up; `quiet`: it found nothing new for QUIET_MS. */
  async afterCatchUp(quiet: boolean): Promise<PassResult> {
    const total: PassResult = { transactions: 0, bytes: 0 };
    const add = (r: PassResult): boolean => addPass(total, r);
    // TRUNCATE in a quiet moment only: it needs the app's write lock for its checkpoint, and under
    // steady writes it would only make the app wait. Its safety does not depend on the moment.
    if (quiet && this.opts.truncateBytes > 0 && (await fileSize(this.pump.walPath)) >= this.opts.truncateBytes) {
      if (!add(await this.truncateWal())) return total;
    } else if (this.pump.state.cursor && this.pump.state.cursor.frame >= this.opts.checkpointFrames) {
      // Move the mark to the end of what is spooled so the checkpoint may backfill all of it.
      this.pump.advanceRead();
      if (!add(await this.pump.catchUp())) return total;
      try {
        total.checkpoint = this.db.checkpoint('PASSIVE', 0);
      } catch (err) {
        this.checkpointFailed(err);
      }
      if (total.checkpoint && !total.checkpoint.busy && total.checkpoint.checkpointedFrames === total.checkpoint.walFrames) {
        // Fully backfilled: a reader begun now uses no WAL frames, so it does not stop the app's
        // next write from restarting the WAL from the start (which keeps the WAL file small
        // without any blocking checkpoint). Catch up again: the new mark may be past the spool.
        this.pump.advanceRead();
        if (!add(await this.pump.catchUp())) return total;
      } else if (this.resetWorthTrying(total.checkpoint)) {
        if (!add(await this.resetWal())) return total;
      }
    }
    return total;
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
    if (this.pump.uncommittedFrames > 0) return { transactions: 0, bytes: 0 };
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
    if (last && this.pump.state.cursor?.salt1 === last.salt1 && this.pump.state.cursor.salt2 === last.salt2 && Date.now() - last.at < RESET_RETRY_MS) return false;
    const behind = checkpoint.walFrames - (this.pump.state.cursor?.frame ?? 0);
    return behind <= RESET_BEHIND_FACTOR * this.resetMaxFrames();
  }

  /** Most frames a reset may leave to do under the lock (see RESET_FORCE_FACTOR). */
  private resetMaxFrames(): number {
    return this.walBytes() >= RESET_FORCE_FACTOR * this.opts.resetBytes ? RESET_FORCE_MAX_FRAMES : RESET_MAX_FRAMES;
  }

  /** Bytes of the WAL up to the capture cursor (its current incarnation). */
  private walBytes(): number {
    const frames = this.pump.state.cursor?.frame ?? 0;
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
      if (!addPass(total, await this.pump.catchUp())) return total;
      this.pump.advanceRead();
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
    addPass(total, await this.pump.catchUp());
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
      const spooled = this.pump.state.cursor?.frame ?? 0;
      if (probe.busy || probe.walFrames < spooled || probe.walFrames - spooled + (probe.walFrames - probe.checkpointedFrames) > maxFrames) {
        return null;
      }
      // Raw: the app is waiting, and copying is several times faster than compressing.
      const got = await this.pump.catchUp(true);
      // Our readers are all that keeps the WAL from restarting once the lock goes: end them only
      // when that catch-up read the WAL to its end (markAhead cleared), never on a partial one.
      if (got.broken || this.pump.markAhead || !this.db.releaseReads()) return got;
      let checkpoint: CheckpointResult | undefined;
      try {
        // A longer wait here: a checkpoint the app started may now backfill everything, and the
        // app is busy with it, not waiting on our lock. Giving up would waste the reset.
        checkpoint = await this.checkpointPassive(RESET_FINAL_CHECKPOINT_WAIT_MS);
      } catch (err) {
        this.checkpointFailed(err);
      }
      // Every frame is spooled and none can be added while we hold the lock: the invariant holds.
      this.pump.advanceRead();
      this.pump.markAhead = false;
      if (!checkpoint) return got;
      if (!checkpoint.busy && this.pump.state.cursor) this.lastReset = { salt1: this.pump.state.cursor.salt1, salt2: this.pump.state.cursor.salt2, at: Date.now() };
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
   * later pass; one refused because the files changed under pitr ends the pass (see Capture.pass).
   */
  private checkpointFailed(err: unknown): void {
    if (isPitrError(err, 'DB_FILES_CHANGED')) throw err;
    this.opts.log.debug('checkpoint skipped', { err });
  }
}

async function fileSize(path: string): Promise<number> {
  try {
    return (await stat(path)).size;
  } catch (err) {
    if (errnoCode(err) === 'ENOENT') return 0;
    throw err;
  }
}
