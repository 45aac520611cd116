import { readFileSync, realpathSync } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { PitrError, errnoCode } from '../errors.js';
import { writeFileAtomic } from '../util/fs-atomic.js';

/** The lock file in a state directory, and the note beside it saying who holds it. */
export const LOCK_FILE = 'agent.lock';
export const HOLDER_FILE = 'agent.json';

/** Who runs (or last ran) the agent of a state directory: written beside the lock once it is held. */
export interface LockHolder {
  pid: number;
  host: string;
  startedAt: string;
  db: string;
  stateDir: string;
  replicas: string[];
  version: string;
}

/**
 * Lock paths held by this process. POSIX drops every lock a process holds on a file when it
 * closes any descriptor of that file, so the same lock file must never be opened twice here.
 */
const heldHere = new Set<string>();

/**
 * An OS lock on a state directory, held for as long as the agent runs: a small SQLite file in
 * `locking_mode=EXCLUSIVE` that has been written once, so SQLite keeps its POSIX write lock on
 * the file until the connection closes, and the kernel drops it when the process dies in any
 * way (SIGKILL included). Node has no flock; better-sqlite3 is already a dependency.
 */
export class StateLock {
  private constructor(
    private db: Database.Database | undefined,
    private readonly path: string,
    private readonly dir: string,
    private holder: LockHolder,
  ) {}

  /**
   * Take the lock of `dir` (which must exist) without waiting, then record `holder` beside it
   * (the replicas of the last holder stay until recordReplicas: a start refused for a bad replica
   * must not replace the ones that worked). STATE_DIR_LOCKED naming the holder's pid and host when
   * another process has it. `what` says what the lock protects, for the message ("state directory
   * /x", "database /x/app.db").
   */
  static async acquire(dir: string, holder: Omit<LockHolder, 'pid' | 'host' | 'startedAt' | 'replicas'>, what: string): Promise<StateLock> {
    const path = join(realpathSync(dir), LOCK_FILE);
    if (heldHere.has(path)) throw new Error(`${path} is already held by this process: it must not be opened twice (POSIX locks)`);
    let db: Database.Database | undefined;
    try {
      db = new Database(path, { timeout: 0 });
      db.pragma('locking_mode = EXCLUSIVE');
      // The write takes SQLite's EXCLUSIVE lock, which locking_mode=EXCLUSIVE keeps after COMMIT.
      db.exec('BEGIN IMMEDIATE');
      db.exec('CREATE TABLE IF NOT EXISTS holder (id INTEGER PRIMARY KEY CHECK (id = 1), pid INTEGER, started_at TEXT)');
      db.prepare('INSERT OR REPLACE INTO holder (id, pid, started_at) VALUES (1, ?, ?)').run(process.pid, new Date().toISOString());
      db.exec('COMMIT');
    } catch (err) {
      try {
        db?.close();
      } catch {
        // closing a connection that failed to lock: nothing to keep
      }
      throw lockFailure(err, dir, path, what);
    }
    heldHere.add(path);
    const full: LockHolder = { pid: process.pid, host: hostname(), startedAt: new Date().toISOString(), ...holder, replicas: readLockHolder(dir)?.replicas ?? [] };
    const lock = new StateLock(db, path, dir, full);
    try {
      await lock.writeHolder();
    } catch (err) {
      lock.release();
      throw err;
    }
    return lock;
  }

  /** Record the replicas this agent ships to, once they have been checked. */
  async recordReplicas(replicas: string[]): Promise<void> {
    this.holder = { ...this.holder, replicas };
    await this.writeHolder();
  }

  private async writeHolder(): Promise<void> {
    await writeFileAtomic(join(this.dir, HOLDER_FILE), JSON.stringify(this.holder, null, 2) + '\n');
  }

  /** Let go of the lock (idempotent). The holder note stays: it names the last agent and its replicas. */
  release(): void {
    if (!this.db) return;
    const db = this.db;
    this.db = undefined;
    heldHere.delete(this.path);
    db.close();
  }
}

/** The note beside a state directory's lock, or undefined when there is none or it is unreadable. */
export function readLockHolder(dir: string): LockHolder | undefined {
  try {
    const h = JSON.parse(readFileSync(join(dir, HOLDER_FILE), 'utf8')) as LockHolder;
    return typeof h.pid === 'number' && typeof h.host === 'string' ? h : undefined;
  } catch {
    return undefined;
  }
}

function lockFailure(err: unknown, dir: string, path: string, what: string): Error {
  const code = errnoCode(err);
  if (code === 'SQLITE_BUSY' || code === 'SQLITE_LOCKED') {
    const h = readLockHolder(dir);
    const known = h !== undefined && (h.host !== hostname() || alive(h.pid));
    const who = known ? `pid ${h.pid} on ${h.host}, started ${h.startedAt}${h.db ? `, replicating ${h.db}` : ''}` : 'a process that has not recorded its pid yet';
    return new PitrError(
      'STATE_DIR_LOCKED',
      `${what} is in use by another pitr agent (${who})`,
      known
        ? `one agent per database and state directory: stop that one first${h.host === hostname() ? ` (kill ${h.pid})` : ` (on ${h.host})`}, or give every replica to it (pitr replicate DB REPLICA1 REPLICA2)`
        : `one agent per database and state directory; find it with: fuser ${path}`,
      { cause: err },
    );
  }
  if (code === 'SQLITE_NOTADB' || code === 'SQLITE_CORRUPT') {
    return new PitrError(
      'STATE_DIR_INVALID',
      `the lock file ${path} is damaged (${(err as Error).message}); no agent holds it`,
      `it holds nothing but the lock: remove ${path} and start the agent again`,
      { cause: err },
    );
  }
  if (code === 'SQLITE_READONLY' || code === 'SQLITE_CANTOPEN' || code === 'SQLITE_PERM' || code === 'SQLITE_IOERR') {
    return new PitrError(
      'PERMISSION_DENIED',
      `cannot take the lock ${path}: ${(err as Error).message}`,
      `let the user running pitr write ${dir}, or pass --state-dir with a directory it can write`,
      { cause: err },
    );
  }
  return err instanceof Error ? err : new Error(String(err));
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return errnoCode(err) === 'EPERM';
  }
}
