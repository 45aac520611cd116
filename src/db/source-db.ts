import Database from 'better-sqlite3';
import { PitrError } from '../errors.js';
import { readDbFileInfo, type DbFileInfo } from './db-file.js';
import { acquireDbFile, type DbFileRef } from './db-file-handle.js';
import { FileGuard, filesChanged } from './file-guard.js';

export type CheckpointMode = 'PASSIVE' | 'FULL' | 'RESTART' | 'TRUNCATE';

export interface CheckpointResult {
  /** RESET: pitr's PASSIVE checkpoint under its own write lock (Capture.resetWal); its duration is the lock's. */
  mode: CheckpointMode | 'RESET';
  busy: boolean;
  walFrames: number;
  checkpointedFrames: number;
  durationMs: number;
}

/** A pinned read transaction: while held, SQLite cannot restart the WAL past it nor backfill beyond its mark. */
export interface ReadPin {
  release(): void;
}

/** SQLite's write lock held by pitr: no connection can commit until release(). */
export interface WriteLock {
  release(): void;
}

interface Reader {
  conn: Database.Database;
  inTx: boolean;
  pins: number;
}

/**
 * The agent's own connections to the app's database. pitr never writes app data: the readers are
 * opened read-only (so closing them never checkpoints or deletes the WAL), one read-write
 * connection exists only to run checkpoints (and, when asked, to switch the file to WAL once), and
 * another only to hold SQLite's write lock for a moment (lockWriters, for a WAL reset).
 *
 * Read-lock protocol (why the WAL cannot be restarted under frames we have not read yet):
 * capture always holds one read transaction. To move its mark forward it first begins a read
 * transaction on another reader and only then ends the old one, so there is no instant without a
 * reader. While a reader with mark M is held, checkpoints backfill at most frame M and a writer can
 * restart the WAL only if every frame is backfilled and no reader uses the WAL; capture begins a new
 * reader only after it has spooled every frame up to the previous mark. So a restart can only
 * happen when capture has read the whole WAL.
 */
export class SourceDb {
  readonly path: string;
  readonly info: DbFileInfo;
  private readonly readers: Reader[];
  private current: Reader | null = null;
  /** Runs checkpoints; open for the whole life of the SourceDb (see openConnections). */
  private readonly writer: Database.Database;
  /** Takes the write lock for lockWriters(); never writes. Separate from `writer`, which must be out of any transaction to checkpoint. */
  private readonly locker: Database.Database;
  /**
   * Held, not used: while this SourceDb lives, no other part of the process can close the last
   * descriptor of the database file, which would drop SQLite's locks (see db-file-handle.ts).
   */
  private readonly file: DbFileRef;
  /** Whether the database, -wal and -shm at their paths are still the files these connections use. */
  readonly guard: FileGuard;
  private closed = false;

  private constructor(path: string, info: DbFileInfo, readers: Reader[], writer: Database.Database, locker: Database.Database, file: DbFileRef, guard: FileGuard) {
    this.path = path;
    this.info = info;
    this.readers = readers;
    this.writer = writer;
    this.locker = locker;
    this.file = file;
    this.guard = guard;
  }

  /**
   * Open the database for capture. Refuses a database that is not in WAL mode unless enableWal,
   * in which case it switches it (a one-time header change, like `PRAGMA journal_mode=WAL`).
   */
  static async open(path: string, opts: { enableWal?: boolean } = {}): Promise<SourceDb> {
    let info = await readDbFileInfo(path);
    // Held until close(), after the connections: see db-file-handle.ts for why.
    const file = await acquireDbFile(path);
    try {
      return await SourceDb.openConnections(path, info, file, opts);
    } catch (err) {
      await file.release();
      throw err;
    }
  }

  private static async openConnections(path: string, info: DbFileInfo, file: DbFileRef, opts: { enableWal?: boolean }): Promise<SourceDb> {
    if (!info.walMode) {
      if (!opts.enableWal) {
        throw new PitrError(
          'DB_NOT_WAL',
          `database ${path} is not in WAL mode`,
          `run "sqlite3 ${path} 'PRAGMA journal_mode=WAL'" once (it persists), or start pitr with --enable-wal`,
        );
      }
      const conn = openConn(path, false);
      try {
        conn.pragma('busy_timeout = 5000');
        const mode = conn.pragma('journal_mode = WAL', { simple: true });
        if (String(mode).toLowerCase() !== 'wal') {
          throw new PitrError('DB_NOT_WAL', `could not switch ${path} to WAL mode (it stays "${String(mode)}")`, 'check that no other process holds an exclusive lock, and that the file system supports shared memory');
        }
      } finally {
        conn.close();
      }
      info = await readDbFileInfo(path);
    }
    // The read-write connection first, and kept open: it creates the -wal and -shm files when the
    // app has none open (an app that opens the database per request), which read-only connections
    // cannot do, and after its first read it holds SQLite's SHARED lock on the database file, so an
    // app closing its own last connection never checkpoints and deletes the WAL under us. See
    // test/integration/open-close-app.test.ts.
    const writer = openConn(path, false);
    try {
      writer.pragma('busy_timeout = 5000');
      writer.prepare('SELECT count(*) FROM sqlite_schema').pluck().get();
    } catch (err) {
      writer.close();
      throw new PitrError('DB_OPEN_FAILED', `cannot read ${path}: ${(err as Error).message}`, 'check that the file is a healthy SQLite database and that pitr may write next to it (-wal, -shm)', { cause: err });
    }
    const readers: Reader[] = [];
    let locker: Database.Database | undefined;
    try {
      locker = openConn(path, false);
      for (let i = 0; i < 3; i++) {
        const conn = openConn(path, true);
        readers.push({ conn, inTx: false, pins: 0 });
        conn.pragma('busy_timeout = 5000');
        // SQLite opens a connection's -wal at its first read: do it now, so that every file the
        // connections will ever use is open when the guard records them.
        conn.prepare('SELECT count(*) FROM sqlite_schema').pluck().get();
      }
      const guard = FileGuard.open(path, file.fh.fd);
      if (typeof guard === 'string') throw filesChanged(guard);
      return new SourceDb(path, info, readers, writer, locker, file, guard);
    } catch (err) {
      // The agent retries opening on every change: leave no connections behind each time. The
      // read-write ones first, while the readers' locks keep them from being the last connection
      // (SQLite checkpoints and deletes the WAL when the last one closes).
      locker?.close();
      writer.close();
      for (const r of readers) r.conn.close();
      throw err;
    }
  }

  /** Throws DB_FILES_CHANGED when the files at the database's paths are not the ones these connections use. */
  assertFiles(): void {
    const problem = this.guard.identityProblem();
    if (problem) throw filesChanged(problem);
  }

  /**
   * Move the held read transaction forward to the database's current state, without ever holding
   * none (see the class comment). Precondition: every frame up to the held reader's mark is
   * spooled. The new mark may be ahead of what is spooled, so the caller must read and spool up
   * to the end of the WAL before calling this again.
   */
  advanceRead(): void {
    this.assertOpen();
    this.assertFiles();
    const next = this.readers.find((r) => r !== this.current && !r.inTx);
    if (!next) {
      throw new PitrError('DB_OPEN_FAILED', 'no free reader connection (internal: too many pinned snapshots)', 'report this as a bug');
    }
    next.conn.exec('BEGIN');
    try {
      // A deferred BEGIN takes no lock; the first read fixes the snapshot (the WAL read mark).
      next.conn.prepare('SELECT count(*) FROM sqlite_schema').pluck().get();
    } catch (err) {
      next.conn.exec('ROLLBACK');
      throw new PitrError('DB_OPEN_FAILED', `cannot read ${this.path}: ${(err as Error).message}`, 'check that the file is a healthy SQLite database', { cause: err });
    }
    next.inTx = true;
    const prev = this.current;
    this.current = next;
    if (prev && prev.pins === 0) this.endTx(prev);
  }

  /** Keep the current read transaction alive (e.g. for a snapshot) even after capture advances. */
  pinRead(): ReadPin {
    const reader = this.current;
    if (!reader) throw new PitrError('DB_OPEN_FAILED', 'no read transaction to pin (internal)', 'report this as a bug');
    reader.pins++;
    let released = false;
    return {
      release: () => {
        if (released) return;
        released = true;
        reader.pins--;
        if (this.closed) return; // close() ended every transaction
        if (reader.pins === 0 && reader !== this.current) this.endTx(reader);
      },
    };
  }

  /**
   * fdatasync the database file. A checkpoint that backfills only part of the WAL leaves its page
   * writes unsynced and the next complete one syncs them all (SQLite syncs the database only then);
   * run before a checkpoint taken under the write lock, this leaves that one little to wait for.
   * Syncing changes no byte of the file.
   */
  async syncDbFile(): Promise<void> {
    this.assertOpen();
    await this.file.fh.datasync();
  }

  /** True while a snapshot pins a read transaction (which also bounds what a checkpoint may backfill). */
  pinned(): boolean {
    return this.readers.some((r) => r.pins > 0);
  }

  /**
   * Take SQLite's write lock (BEGIN IMMEDIATE on a connection that never writes), so no connection
   * can append to the WAL until release(); null when the app still holds it after busyTimeoutMs.
   * The app's writers wait in their busy handlers meanwhile: hold it for as little as possible.
   * An empty write transaction writes nothing, so releasing it can neither restart the WAL nor
   * checkpoint.
   */
  lockWriters(busyTimeoutMs: number): WriteLock | null {
    this.assertOpen();
    this.assertFiles();
    this.locker.pragma(`busy_timeout = ${Math.max(0, Math.floor(busyTimeoutMs))}`);
    try {
      this.locker.exec('BEGIN IMMEDIATE');
    } catch (err) {
      if (isBusy(err)) return null;
      throw err;
    }
    let released = false;
    return {
      release: () => {
        if (released) return;
        released = true;
        this.locker.exec('ROLLBACK');
      },
    };
  }

  /**
   * Run a checkpoint on the writer connection with a short busy timeout so it never makes the
   * app's writers wait long. PASSIVE never blocks anyone; the others are for explicit requests.
   */
  checkpoint(mode: CheckpointMode, busyTimeoutMs = 50): CheckpointResult {
    this.assertOpen();
    // Synchronously before the checkpoint: through a -wal or -shm that is no longer the file at its
    // path, a checkpoint copies stale frames into whatever file is at the database's path now.
    this.assertFiles();
    this.writer.pragma(`busy_timeout = ${Math.max(0, Math.floor(busyTimeoutMs))}`);
    const start = performance.now();
    const row = this.writer.prepare(`PRAGMA wal_checkpoint(${mode})`).get() as { busy: number; log: number; checkpointed: number };
    return {
      mode,
      busy: row.busy !== 0,
      walFrames: row.log,
      checkpointedFrames: row.checkpointed,
      durationMs: performance.now() - start,
    };
  }

  /**
   * End every read transaction, for a checkpoint that must restart the WAL. Returns false (and
   * changes nothing) while a snapshot pins one. The caller must advanceRead() afterwards.
   */
  releaseReads(): boolean {
    if (this.pinned()) return false;
    for (const r of this.readers) if (r.inTx) this.endTx(r);
    this.current = null;
    return true;
  }

  /** End every transaction and close. The read-write connections close first so neither is ever the last one. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    for (const conn of [this.locker, this.writer]) {
      try {
        conn.close(); // rolls back a held write lock
      } catch {
        // closing is best effort; the process is going away
      }
    }
    for (const r of this.readers) {
      try {
        if (r.inTx) r.conn.exec('COMMIT');
        r.conn.close();
      } catch {
        // same
      }
    }
    // Only now that SQLite holds no locks may the descriptor close.
    this.file.release().catch(() => {}); // closing a read-only descriptor: nothing to lose
  }

  private endTx(reader: Reader): void {
    reader.conn.exec('COMMIT');
    reader.inTx = false;
  }

  private assertOpen(): void {
    if (this.closed) throw new PitrError('DB_OPEN_FAILED', `database ${this.path} is closed`, 'internal: use after close');
  }
}

function isBusy(err: unknown): boolean {
  const code = (err as { code?: unknown }).code;
  return typeof code === 'string' && code.startsWith('SQLITE_BUSY');
}

function openConn(path: string, readonly: boolean): Database.Database {
  try {
    return new Database(path, { readonly, fileMustExist: true });
  } catch (err) {
    throw new PitrError('DB_OPEN_FAILED', `cannot open database ${path}: ${(err as Error).message}`, 'check the path and permissions', { cause: err });
  }
}
