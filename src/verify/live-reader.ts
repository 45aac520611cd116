import { realpathSync, statSync } from 'node:fs';
import { stat } from 'node:fs/promises';
import Database from 'better-sqlite3';
import { heldFiles } from '../db/held-files.js';
import { PitrError, errnoCode } from '../errors.js';

/** Open a database read-only; DB_OPEN_FAILED naming it when SQLite cannot. */
export function openReadOnly(path: string): Database.Database {
  try {
    return new Database(path, { readonly: true, fileMustExist: true });
  } catch (err) {
    throw new PitrError('DB_OPEN_FAILED', `cannot open database ${path}: ${(err as Error).message}`, 'check the path and permissions', { cause: err });
  }
}

/**
 * Fail early, naming the path, when `dbPath` is no readable SQLite database: DB_NOT_FOUND,
 * DB_IS_DIRECTORY, DB_OPEN_FAILED. Only SQLite opens the file, never a descriptor of ours: POSIX
 * drops all of a process's locks on a file when any descriptor of it closes, and in a verify worker
 * that process is the agent's, whose shared handle registry (src/db/db-file-handle.ts) a worker
 * thread does not share. SQLite keeps its own descriptors safe across threads.
 */
export async function checkLiveDatabase(dbPath: string): Promise<void> {
  let st;
  try {
    st = await stat(dbPath);
  } catch (err) {
    if (errnoCode(err) === 'ENOENT') throw new PitrError('DB_NOT_FOUND', `database ${dbPath} does not exist`, 'check the path, or start the app first', { cause: err });
    throw new PitrError('DB_OPEN_FAILED', `cannot stat database ${dbPath}: ${(err as Error).message}`, 'check permissions', { cause: err });
  }
  if (st.isDirectory()) throw new PitrError('DB_IS_DIRECTORY', `database path ${dbPath} is a directory`, 'pass the path of the SQLite database file, e.g. /data/app.db');
  if (st.size === 0) throw new PitrError('DB_OPEN_FAILED', `database ${dbPath} is empty (no page written yet)`, 'wait until the app has created its schema');
  const db = openReadOnly(dbPath);
  try {
    db.pragma('query_only = 1');
    db.pragma('busy_timeout = 5000');
    db.prepare('SELECT count(*) FROM sqlite_schema').pluck().get();
  } catch (err) {
    throw new PitrError('DB_OPEN_FAILED', `cannot read database ${dbPath}: ${(err as Error).message}`, 'pass the path of the SQLite database file', { cause: err });
  } finally {
    db.close();
  }
}

export type LiveRead<T> = { ok: true; value: T } | { ok: false; why: string };

/**
 * Run `fn` inside one read transaction on the app's live database, on a connection that lives only
 * for this call. The app owns the file, so the connection can only read: it is opened read-only
 * (SQLite refuses a checkpoint through it, so closing it never copies or removes the app's WAL) and
 * query_only. SQLite keeps using a -wal or -shm that was replaced under an open connection (an
 * operator copying a backup over the live files), and in one process it shares them with the
 * agent's connections: what such a connection reads is not the database. So the files are compared
 * before and after the read, the way src/db/file-guard.ts does, and a change refuses the result
 * ({ ok: false }) rather than let it be compared as if it were the live content.
 */
export async function readLive<T>(dbPath: string, fn: (db: Database.Database) => Promise<T>): Promise<LiveRead<T>> {
  const db = openReadOnly(dbPath);
  try {
    db.pragma('query_only = 1');
    db.pragma('busy_timeout = 5000');
    db.exec('BEGIN');
    try {
      // A deferred BEGIN takes no lock; the first read opens the -wal and -shm and fixes the snapshot.
      db.prepare('SELECT count(*) FROM sqlite_schema').pluck().get();
      const before = idsAt(dbPath);
      const value = await fn(db);
      const changed = changedPart(dbPath, before, idsAt(dbPath)) ?? staleHeld(dbPath);
      return changed === null ? { ok: true, value } : { ok: false, why: `${changed} while verify read the live database` };
    } finally {
      db.exec('COMMIT');
    }
  } finally {
    db.close();
  }
}

const PARTS = ['', '-wal', '-shm'] as const;

function describe(dbPath: string, part: (typeof PARTS)[number]): string {
  return part === '' ? `the database file ${dbPath}` : `the ${part} file ${dbPath}${part}`;
}

/** "dev:ino" of the database, -wal and -shm at their paths; null for one that is absent. */
function idsAt(dbPath: string): (string | null)[] {
  return PARTS.map((part) => {
    try {
      const st = statSync(`${dbPath}${part}`);
      return `${st.dev}:${st.ino}`;
    } catch (err) {
      if (errnoCode(err) === 'ENOENT') return null;
      throw err;
    }
  });
}

function changedPart(dbPath: string, before: (string | null)[], after: (string | null)[]): string | null {
  const i = before.findIndex((id, n) => id !== after[n]);
  if (i < 0) return null;
  const part = PARTS[i] ?? '';
  return `${describe(dbPath, part)} was ${after[i] === null ? 'removed' : before[i] === null ? 'created' : 'replaced'}`;
}

/**
 * A file of this database that a descriptor of this process holds but that is no longer the file at
 * its path (removed or replaced, even before our first look): the connection, or the agent's that
 * it shares them with, reads something else. Null where /proc is not available.
 */
function staleHeld(dbPath: string): string | null {
  let real: string;
  try {
    real = realpathSync(dbPath);
  } catch {
    return null;
  }
  const current = idsAt(real);
  for (const f of heldFiles(PARTS.map((part) => `${real}${part}`)) ?? []) {
    const i = PARTS.findIndex((part) => f.path === `${real}${part}`);
    if (`${f.dev}:${f.ino}` !== current[i]) return `${describe(dbPath, PARTS[i] ?? '')} was replaced or removed`;
  }
  return null;
}
