import { open, stat, type FileHandle } from 'node:fs/promises';
import { resolve } from 'node:path';

/**
 * File handles on the app's database file, shared per file and closed only when nobody holds one.
 *
 * Why: SQLite locks the database with POSIX record locks, and POSIX drops ALL of a process's locks
 * on a file when the process closes ANY descriptor for it. SQLite guards against that for its own
 * descriptors, but not for ours. So when the agent read the header or a snapshot's pages through a
 * descriptor of its own and closed it, its SQLite connections silently lost their SHARED lock on
 * the database, and an app closing what it then took for the last connection checkpointed and
 * DELETED the WAL, commits pitr had not read included (reproduced with the sqlite3 shell as the
 * app: every commit after the first snapshot was missing from the replica). SourceDb holds a
 * handle for as long as its connections are open; every other reader of the file goes through here
 * too, so no descriptor of the file is closed while SQLite holds locks on it.
 */
interface Entry {
  ino: number;
  dev: number;
  fh: FileHandle;
  refs: number;
}

const entries = new Map<string, Entry[]>();
/** Descriptors opened in a race with a held one for the same file: kept open until exit. */
const parked: FileHandle[] = [];

export interface DbFileRef {
  readonly fh: FileHandle;
  /** Give the handle back; the descriptor closes when the last holder of this file releases. */
  release(): Promise<void>;
}

/** Acquisitions of one path run one at a time, so two never open the same file side by side. */
const queues = new Map<string, Promise<unknown>>();

/** A shared read-only handle on the database file at `path` (the file it names now). */
export function acquireDbFile(path: string): Promise<DbFileRef> {
  const key = resolve(path);
  const run = (queues.get(key) ?? Promise.resolve()).then(() => acquire(key));
  const tail = run.catch(() => {});
  queues.set(key, tail);
  void tail.then(() => {
    if (queues.get(key) === tail) queues.delete(key);
  });
  return run;
}

async function acquire(key: string): Promise<DbFileRef> {
  const st = await stat(key);
  const list = entries.get(key) ?? [];
  let entry = list.find((e) => e.ino === st.ino && e.dev === st.dev);
  if (!entry) {
    const fh = await open(key, 'r');
    const real = await fh.stat();
    // The path may name another file than the one stat saw (replaced in between).
    entry = list.find((e) => e.ino === real.ino && e.dev === real.dev);
    if (entry) {
      parked.push(fh); // a second descriptor of a held file: closing it would be the danger itself
    } else {
      entry = { ino: real.ino, dev: real.dev, fh, refs: 0 };
      list.push(entry);
      entries.set(key, list);
    }
  }
  entry.refs++;
  const held = entry;
  let released = false;
  return {
    fh: held.fh,
    release: async () => {
      if (released) return;
      released = true;
      held.refs--;
      if (held.refs > 0) return;
      const rest = (entries.get(key) ?? []).filter((e) => e !== held);
      if (rest.length > 0) entries.set(key, rest);
      else entries.delete(key);
      // Closing drops the process's locks on this file: only a file nobody holds gets here, and
      // SourceDb holds its file for as long as its connections are open.
      await held.fh.close();
    },
  };
}
