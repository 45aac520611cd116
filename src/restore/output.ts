import { stat, unlink } from 'node:fs/promises';
import { dirname } from 'node:path';
import Database from 'better-sqlite3';
import { PitrError, errnoCode } from '../errors.js';
import { checkWritableDir, type DirRole } from '../util/writable-dir.js';
import { describeFileUser, findFileUsers } from './files-in-use.js';

export const OUTPUT_DIR: DirRole = { name: 'output directory', notDirCode: 'OUTPUT_INVALID', otherwise: 'or choose another -o path' };

/**
 * Why a restore to `output` must not run, or undefined: a missing or unwritable directory, an
 * existing output or stale -wal/-shm/-journal without `force`, and with `force` a database some
 * process still uses. Reads only: a dry run asks too.
 */
export async function outputProblem(output: string, force: boolean): Promise<PitrError | undefined> {
  try {
    await checkWritableDir(dirname(output), OUTPUT_DIR);
  } catch (err) {
    if (err instanceof PitrError) return err;
    throw err;
  }
  let existing = false;
  for (const path of [output, `${output}-wal`, `${output}-shm`, `${output}-journal`]) {
    let exists = true;
    let isDir = false;
    try {
      isDir = (await stat(path)).isDirectory();
    } catch (err) {
      if (errnoCode(err) !== 'ENOENT') throw err;
      exists = false;
    }
    if (isDir) return new PitrError('OUTPUT_INVALID', `output ${path} is a directory`, 'pass a file path with -o');
    if (exists && !force) {
      return new PitrError(
        'OUTPUT_EXISTS',
        `output ${path} already exists`,
        path === output ? 'choose another -o path, or pass --force to replace it' : 'SQLite would replay a WAL/journal left next to the output onto the restored file: move it away (it may hold the last commits of a database that was moved), or pass --force to replace it',
      );
    }
    existing ||= exists;
  }
  return existing ? outputInUse(output) : undefined;
}

/**
 * DB_IN_USE when another process has the output database (or its -wal, -shm) open or locked: the
 * app, or an agent replicating it. Replacing the file under it would corrupt it: SQLite would go
 * on writing through its open -wal/-shm and descriptors into the replaced file or the new one.
 */
export function outputInUse(output: string): PitrError | undefined {
  const users = findFileUsers([output, `${output}-wal`, `${output}-shm`, `${output}-journal`]);
  if (users === undefined || users.length === 0) return undefined;
  return new PitrError(
    'DB_IN_USE',
    `output ${output} is in use: ${users.map(describeFileUser).join('; ')}`,
    'restoring over a database that is open corrupts it, --force or not: stop the app (and any `pitr replicate` of this database) first, then restore again; or restore to another -o path and move it into place while the app is stopped',
  );
}

/** A stale -wal next to the replaced file would be replayed onto the restored pages by SQLite. */
export async function removeSidecars(output: string): Promise<void> {
  for (const s of ['-wal', '-shm', '-journal']) await unlink(`${output}${s}`).catch(() => {});
}

/** SQLite maps at most this much of the file; the rest is read with pread as usual. */
const INTEGRITY_MMAP_BYTES = 1 << 30;

export function integrityCheck(tmp: string, output: string): void {
  let db: Database.Database | undefined;
  try {
    db = new Database(tmp, { fileMustExist: true });
    // Pages through mmap instead of one pread each: integrity_check 0.20 -> 0.14 s on 280 MB.
    db.pragma(`mmap_size=${INTEGRITY_MMAP_BYTES}`);
    const rows = db.pragma('integrity_check') as { integrity_check: string }[];
    const msg = rows.map((r) => r.integrity_check).join('; ');
    if (msg !== 'ok') {
      throw new PitrError('INTEGRITY_CHECK_FAILED', `restored database failed PRAGMA integrity_check: ${msg.slice(0, 500)}`, `nothing was written to ${output}; try another point in time and report this`);
    }
  } catch (err) {
    if (err instanceof PitrError) throw err;
    throw new PitrError('INTEGRITY_CHECK_FAILED', `restored database cannot be opened: ${(err as Error).message}`, `nothing was written to ${output}; report this`, { cause: err });
  } finally {
    db?.close();
  }
}
