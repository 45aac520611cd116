import { watch, type FSWatcher } from 'node:fs';
import { basename, dirname } from 'node:path';

/**
 * One-shot change notice for the database file and its WAL: once armed, the first event that
 * names either (created, written, removed, renamed) disarms the watcher and calls `onChange`; the
 * replicator re-arms it after the capture pass that follows.
 *
 * Why one-shot: the kernel raises an event for every write() the app makes to its WAL, and an
 * always-on watcher wakes the agent for each one. With a writer committing flat out that cost the
 * app ~15% of its commit rate (measured with bench/overhead-bench.ts), although one notice per
 * capture pass is all the agent can use. A change made while disarmed is not lost: on re-arming
 * the replicator compares the WAL's stat with the one it took when the pass began.
 *
 * Why fs.watch on the directory and not chokidar: no directory re-read and lstat of every entry
 * per event, and the WAL may not exist yet or be deleted and recreated. Events are hints only: the
 * replicator also stats the WAL every few seconds (every second once the watcher failed), so a
 * lost event, a watcher error or a platform without directory watching only delays a pass, never
 * skips data. After an error the watcher stays off and the poll carries on alone.
 *
 * Why one kernel watch per directory, shared: a thousand tenant databases in one directory would
 * otherwise each get every event of every other one (1,000 callbacks per write). The shared watch
 * is open only while some database in the directory is armed, and dispatches by file name.
 */
export class DbWatcher {
  private readonly dir: string;
  private readonly names: string[];
  private closed = false;
  private isArmed = false;
  /**
   * Set by the first watcher error (e.g. ENOSPC: the inotify watch limit). From then on arm() does
   * nothing: the replicator's stat poll (then every second) takes over, instead of a new watcher
   * and a new warning after every pass.
   */
  private failed = false;

  constructor(
    dbPath: string,
    private readonly onChange: () => void,
    private readonly onError: (err: Error) => void,
  ) {
    this.dir = dirname(dbPath);
    this.names = [basename(dbPath), `${basename(dbPath)}-wal`];
  }

  /** False once the watcher failed (or could not start): then only the replicator's poll sees changes. */
  get healthy(): boolean {
    return !this.failed && !this.closed;
  }

  /** True while a watcher waits for the next event. */
  get armed(): boolean {
    return this.isArmed;
  }

  /** Watch until the next relevant event; no-op when already armed or closed. */
  arm(): void {
    if (this.isArmed || this.closed || this.failed) return;
    this.isArmed = true;
    try {
      shared(this.dir).add(this);
    } catch (err) {
      this.fail(err as Error);
    }
  }

  close(): void {
    this.closed = true;
    this.disarm();
  }

  /** Called by the shared directory watch. */
  notify(name: string | undefined): void {
    if (!this.isArmed || (name !== undefined && !this.names.includes(name))) return;
    this.disarm();
    this.onChange();
  }

  fail(err: Error): void {
    this.failed = true;
    this.disarm();
    this.onError(err);
  }

  get fileNames(): readonly string[] {
    return this.names;
  }

  private disarm(): void {
    if (!this.isArmed) return;
    this.isArmed = false;
    directories.get(this.dir)?.remove(this);
  }
}

/** The armed watchers of one directory, and the one fs.watch that serves them while there are any. */
class DirectoryWatch {
  private watcher: FSWatcher | undefined;
  /** By file name; a name with a null key (platforms that omit names) goes to every watcher. */
  private readonly byName = new Map<string, Set<DbWatcher>>();
  private count = 0;

  constructor(private readonly dir: string) {}

  add(w: DbWatcher): void {
    for (const n of w.fileNames) {
      let set = this.byName.get(n);
      if (!set) this.byName.set(n, (set = new Set()));
      set.add(w);
    }
    this.count++;
    if (!this.watcher) this.open();
  }

  remove(w: DbWatcher): void {
    let had = false;
    for (const n of w.fileNames) {
      const set = this.byName.get(n);
      if (set?.delete(w)) had = true;
      if (set && set.size === 0) this.byName.delete(n);
    }
    if (had) this.count--;
    if (this.count <= 0) this.shut();
  }

  private open(): void {
    const w = watch(this.dir, { persistent: false }, (_event, filename) => {
      if (filename === null) {
        // Some platforms omit the name: then any change in the directory may be anyone's.
        for (const set of [...this.byName.values()]) for (const x of [...set]) x.notify(undefined);
        return;
      }
      const set = this.byName.get(filename.toString());
      if (set) for (const x of [...set]) x.notify(filename.toString());
    });
    w.on('error', (err) => {
      const all = new Set([...this.byName.values()].flatMap((s) => [...s]));
      this.shut();
      for (const x of all) x.fail(err);
    });
    this.watcher = w;
  }

  private shut(): void {
    this.watcher?.close();
    this.watcher = undefined;
    this.byName.clear();
    this.count = 0;
    directories.delete(this.dir);
  }
}

const directories = new Map<string, DirectoryWatch>();

function shared(dir: string): DirectoryWatch {
  let d = directories.get(dir);
  if (!d) directories.set(dir, (d = new DirectoryWatch(dir)));
  return d;
}
