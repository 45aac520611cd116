import { statSync } from 'node:fs';
import { DbWatcher } from './db-watcher.js';
import type { Logger } from '../log.js';

/**
 * Least time between the starts of two capture passes. Adds at most this much to the lag under
 * sustained writes; measured at 1,000 commits/s and flat out in bench/ (lag and overhead suites).
 */
const MIN_PASS_GAP_MS = 25;
/** Safety-net stat of the WAL (see poll): without a working watcher, and beside one. */
const POLL_MS = 1000;
const POLL_BESIDE_WATCHER_MS = 5000;

/** Why a pass is scheduled for later: at most one timer per reason, all cleared on stop. */
export type PassDelay = 'pace' | 'quiet' | 'retry';

/**
 * When one database's capture passes run: on a WAL change the watcher reports, on a change the
 * safety-net stat finds, and later for a reason (pacing, a quiet moment, a retry). Passes never
 * overlap, and a burst of events makes one more pass. Owns no periodic timer: the replicator's
 * tick calls poll(), so a thousand idle databases share the supervisor's one timer.
 */
export class PassScheduler {
  private watcher: DbWatcher | undefined;
  private passQueued = false;
  private passRunning = false;
  private lastPassAt = 0;
  private passTimers = new Map<PassDelay, NodeJS.Timeout>();
  private lastWalStat = '';
  private nextPollAt = 0;
  private stopped = false;
  /** Size of the WAL at the last stat, for metrics. */
  walBytes = 0;
  /** When a WAL change was first seen that no finished pass has covered yet (0 = none). */
  changeSeenAt = 0;

  constructor(
    private readonly walPath: string,
    private readonly dbPath: string,
    /** Runs one pass; called with the replicator's lock held. */
    private readonly pass: () => Promise<void>,
    private readonly withLock: <T>(fn: () => Promise<T>) => Promise<T>,
    private readonly log: Logger,
    private readonly pollIntervalMs: number | undefined,
    /** The safety-net stat's interval beside a working watcher (default POLL_BESIDE_WATCHER_MS). */
    private readonly besideWatcherMs: number = POLL_BESIDE_WATCHER_MS,
  ) {}

  start(): void {
    this.watcher = new DbWatcher(
      this.dbPath,
      () => this.schedule(),
      (err) => this.log.warn('file watcher error; falling back to polling every second', { err }),
    );
    this.watcher.arm();
    // What the app committed between the chain's opening scan and this arming raised no event for
    // the watcher: look now rather than at the first safety-net poll.
    this.pollWal();
    this.nextPollAt = Date.now() + this.pollEvery();
  }

  stop(): void {
    this.stopped = true;
    for (const t of this.passTimers.values()) clearTimeout(t);
    this.passTimers.clear();
    this.watcher?.close();
  }

  /**
   * The safety-net stat of the WAL, for an event the watcher missed: every second without a
   * working watcher, every 5 s beside one. With the watcher, a change is seen at once and the poll
   * only bounds how late a lost event can make a pass.
   */
  poll(now: number): void {
    if (this.stopped || now < this.nextPollAt) return;
    this.nextPollAt = now + this.pollEvery();
    this.pollWal();
  }

  /** How often the tick must come for poll() to keep its promise. */
  pollEvery(): number {
    return this.pollIntervalMs ?? (this.watcher?.healthy ? this.besideWatcherMs : POLL_MS);
  }

  /**
   * The WAL's identity, size and mtime, as one comparable string ('missing' when absent).
   * Synchronous: a stat of a local file takes microseconds, and the thread-pool round trip of the
   * async one cost an idle agent more CPU than the stat itself.
   */
  private walSignature(): string {
    try {
      const st = statSync(this.walPath);
      this.walBytes = st.size;
      return `${st.ino}:${st.size}:${st.mtimeMs}`;
    } catch {
      return 'missing'; // a missing WAL is a state like any other
    }
  }

  /** A pass when the WAL changed since the last look (poll, and re-arming after a pass). */
  private pollWal(): void {
    const sig = this.walSignature();
    if (sig !== this.lastWalStat) {
      this.lastWalStat = sig;
      this.schedule();
    }
  }

  /** Run a capture pass soon; passes never overlap, and a burst of events makes one more pass. */
  schedule(fromChange = true): void {
    if (this.stopped) return;
    if (fromChange && this.changeSeenAt === 0) this.changeSeenAt = Date.now();
    if (this.passRunning) {
      this.passQueued = true;
      return;
    }
    // Under sustained writes every WAL event would start a pass as soon as the last one ended,
    // each with its own spool fsync: the agent would take a core from the app to ship the same
    // commits in smaller pieces. Passes start at most every MIN_PASS_GAP_MS; the first change
    // after a quiet spell still starts one at once.
    const wait = this.lastPassAt + MIN_PASS_GAP_MS - Date.now();
    if (wait > 0) {
      if (!this.passTimers.has('pace')) this.later('pace', wait);
      return;
    }
    this.lastPassAt = Date.now();
    this.passRunning = true;
    const seen = this.changeSeenAt;
    void this.withLock(async () => {
      // Taken before the pass reads the WAL: whatever changes after it shows as a difference.
      this.lastWalStat = this.walSignature();
      await this.pass();
    }).finally(() => {
      // Changes noticed after this pass started are still pending for the next one.
      if (this.changeSeenAt === seen) this.changeSeenAt = 0;
      this.passRunning = false;
      if (this.passQueued) {
        this.passQueued = false;
        this.schedule();
      }
      if (!this.stopped) {
        this.watcher?.arm();
        this.pollWal();
      }
    });
  }

  /** A pass in `ms`, replacing any pending one for the same reason. */
  later(why: PassDelay, ms: number): void {
    if (this.stopped) return;
    clearTimeout(this.passTimers.get(why));
    this.passTimers.set(
      why,
      setTimeout(() => {
        this.passTimers.delete(why);
        this.schedule(false);
      }, ms),
    );
  }
}
