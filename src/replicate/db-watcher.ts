import { watch, type FSWatcher } from 'node:fs';
import { basename, dirname } from 'node:path';

/**
 * One-shot change notice for the database file and its WAL: once armed, the first event that
 * names either (created, written, removed, renamed) disarms the watcher and calls `onChange`; the
 * agent re-arms it after the capture pass that follows.
 *
 * Why one-shot: the kernel raises an event for every write() the app makes to its WAL, and an
 * always-on watcher wakes the agent for each one. With a writer committing flat out that cost the
 * app ~15% of its commit rate (measured with bench/overhead-bench.ts), although one notice per
 * capture pass is all the agent can use. A change made while disarmed is not lost: on re-arming
 * the agent compares the WAL's stat with the one it took when the pass began.
 *
 * Why fs.watch on the directory and not chokidar: no directory re-read and lstat of every entry
 * per event (the largest item in the agent's profile at 1,000 commits/s), and the WAL may not exist
 * yet or be deleted and recreated. Events are hints only: the agent also stats the WAL every few
 * seconds (every second once the watcher failed), so a lost event, a watcher error or a platform
 * without directory watching only delays a pass, never skips data. After an error the watcher
 * stays off and the poll carries on alone.
 */
export class DbWatcher {
  private readonly dir: string;
  private readonly wanted: Set<string>;
  private watcher: FSWatcher | undefined;
  private closed = false;
  /**
   * Set by the first watcher error (e.g. ENOSPC: the inotify watch limit). From then on arm() does
   * nothing: the agent's stat poll (then every second) takes over, instead of a new watcher and a new warning after
   * every pass.
   */
  private failed = false;

  constructor(
    dbPath: string,
    private readonly onChange: () => void,
    private readonly onError: (err: Error) => void,
  ) {
    this.dir = dirname(dbPath);
    this.wanted = new Set([basename(dbPath), `${basename(dbPath)}-wal`]);
  }

  /** False once the watcher failed (or could not start): then only the agent's poll sees changes. */
  get healthy(): boolean {
    return !this.failed && !this.closed;
  }

  /** True while a watcher waits for the next event. */
  get armed(): boolean {
    return this.watcher !== undefined;
  }

  /** Watch until the next relevant event; no-op when already armed or closed. */
  arm(): void {
    if (this.watcher || this.closed || this.failed) return;
    try {
      const w = watch(this.dir, { persistent: false }, (_event, filename) => {
        // Some platforms omit the name: then any change in the directory may be ours.
        if (filename !== null && !this.wanted.has(filename.toString())) return;
        this.disarm();
        this.onChange();
      });
      w.on('error', (err) => this.fail(err));
      this.watcher = w;
    } catch (err) {
      this.fail(err as Error);
    }
  }

  close(): void {
    this.closed = true;
    this.disarm();
  }

  private fail(err: Error): void {
    this.failed = true;
    this.disarm();
    this.onError(err);
  }

  private disarm(): void {
    this.watcher?.close();
    this.watcher = undefined;
  }
}
