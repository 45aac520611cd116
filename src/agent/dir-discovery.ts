import { readdirSync, statSync, watch, type FSWatcher } from 'node:fs';
import { join, relative, sep } from 'node:path';

/** SQLite's own files beside a database: never databases themselves. */
const SIDE_FILE = /-(wal|shm|journal)$/;
/** pitr's own directories: a state directory (`DB-pitr`, `.pitr`) holds a lock that is a SQLite file. */
const PITR_DIR = /-pitr$/;

/**
 * The databases a `dir` entry covers: files whose name matches the glob `pattern` (`*`, `?`,
 * `[...]`), in `dir` or, with `recursive`, under it. Hidden entries, pitr's own directories (`.pitr`,
 * `DB-pitr`) and SQLite's -wal/-shm/-journal files are never taken.
 */
export function findDatabases(dir: string, pattern: string, recursive: boolean): string[] {
  const re = globToRegExp(pattern);
  const found: string[] = [];
  const walk = (d: string): void => {
    let entries;
    try {
      entries = readdirSync(d, { withFileTypes: true });
    } catch {
      return; // a directory that went away (or not there yet) holds nothing now
    }
    for (const e of entries) {
      if (e.name.startsWith('.')) continue;
      const p = join(d, e.name);
      if (e.isDirectory()) {
        if (recursive && !PITR_DIR.test(e.name)) walk(p);
        continue;
      }
      if (SIDE_FILE.test(e.name) || !re.test(e.name)) continue;
      if (e.isFile() || (e.isSymbolicLink() && statSync(p, { throwIfNoEntry: false })?.isFile())) found.push(p);
    }
  };
  walk(dir);
  return found.sort();
}

/** {name} of a database found under `dir`: its path under `dir` without the file's extension. */
export function nameOf(dir: string, dbPath: string): string {
  const rel = relative(dir, dbPath).split(sep).join('/');
  const slash = rel.lastIndexOf('/');
  const dot = rel.lastIndexOf('.');
  return dot > slash + 1 ? rel.slice(0, dot) : rel;
}

/** Replace every {name} in a template. */
export function fillTemplate(template: string, name: string): string {
  return template.split('{name}').join(name);
}

/** A file-name glob as a RegExp: `*` any run of characters, `?` one, `[...]` a class. */
export function globToRegExp(glob: string): RegExp {
  let re = '';
  for (let i = 0; i < glob.length; i++) {
    const c = glob[i] as string;
    if (c === '*') re += '.*';
    else if (c === '?') re += '.';
    else if (c === '[') {
      const end = glob.indexOf(']', i + 1);
      if (end < 0) re += '\\[';
      else {
        const body = glob.slice(i + 1, end).replace(/\\/g, '\\\\');
        re += `[${body.startsWith('!') ? `^${body.slice(1)}` : body}]`;
        i = end;
      }
    } else re += c.replace(/[.+^${}()|\\]/g, '\\$&');
  }
  return new RegExp(`^${re}$`);
}

/**
 * Watches one `dir` entry: databases that appear are reported once, databases that disappear once.
 * A flat directory is rescanned when the kernel reports a name created, removed or renamed in it
 * (a `rename` event; the far more frequent writes are `change` events and cost a comparison), and
 * every `slowMs` in case an event was lost; a recursive entry is rescanned every `everyMs` (events
 * do not cover subdirectories). A rescan is one readdir: a thousand names cost well under a
 * millisecond, but every two seconds for a thousand idle databases it was a third of the agent's
 * idle CPU.
 */
export class DirDiscovery {
  private known = new Set<string>();
  private timer: NodeJS.Timeout | undefined;
  private soon: NodeJS.Timeout | undefined;
  private watcher: FSWatcher | undefined;
  private stopped = false;

  constructor(
    private readonly dir: string,
    private readonly pattern: string,
    private readonly recursive: boolean,
    private readonly onAdded: (dbPath: string) => void,
    private readonly onRemoved: (dbPath: string) => void,
  ) {}

  /**
   * Scan now (reporting what is there), then as described above. A file that matches but is not a
   * database is reported too: it fails to start and is listed unhealthy with its error, rather
   * than a damaged tenant database going unnoticed.
   */
  start(everyMs: number, slowMs: number = 15 * everyMs): void {
    this.scan();
    let interval = everyMs;
    if (!this.recursive) {
      try {
        this.watcher = watch(this.dir, { persistent: false }, (event) => {
          if (event === 'rename') this.scanSoon();
        });
        this.watcher.on('error', () => {
          // Back to rescanning often: a watch that failed (the directory removed, a watch limit).
          this.watcher?.close();
          this.watcher = undefined;
        });
        interval = slowMs;
      } catch {
        // No watch (a missing directory, a platform without one): rescan often.
      }
    }
    const loop = (): void => {
      if (this.stopped) return;
      this.timer = setTimeout(() => {
        this.scan();
        loop();
      }, this.watcher ? interval : everyMs);
    };
    loop();
  }

  stop(): void {
    this.stopped = true;
    clearTimeout(this.timer);
    clearTimeout(this.soon);
    this.watcher?.close();
    this.watcher = undefined;
  }

  /** A rescan shortly: a burst of creations (a restore, a migration) makes one. */
  private scanSoon(): void {
    if (this.soon || this.stopped) return;
    this.soon = setTimeout(() => {
      this.soon = undefined;
      if (!this.stopped) this.scan();
    }, 200);
  }

  scan(): void {
    const now = new Set(findDatabases(this.dir, this.pattern, this.recursive));
    for (const p of now) if (!this.known.has(p)) this.onAdded(p);
    for (const p of this.known) if (!now.has(p)) this.onRemoved(p);
    this.known = now;
  }
}
