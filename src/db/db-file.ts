import { stat } from 'node:fs/promises';
import { acquireDbFile } from './db-file-handle.js';
import { PitrError, errnoCode } from '../errors.js';

/** What pitr needs to know about a database file before touching it. */
export interface DbFileInfo {
  pageSize: number;
  /** True when the header's read/write versions say WAL (2). */
  walMode: boolean;
  /** Pages according to the header, or derived from the file size when the header's count is stale. */
  pageCount: number;
  /** Identity of the file: a replaced file (restore, copy over) breaks continuity. */
  dev: number;
  ino: number;
}

const SQLITE_MAGIC = 'SQLite format 3\u0000';

/**
 * Read and validate the header of the database at `path`. Errors name the path and say what to do:
 * DB_NOT_FOUND, DB_IS_DIRECTORY, DB_OPEN_FAILED (not a SQLite file / unreadable).
 */
export async function readDbFileInfo(path: string): Promise<DbFileInfo> {
  let st;
  try {
    st = await stat(path);
  } catch (err) {
    if (errnoCode(err) === 'ENOENT') {
      throw new PitrError('DB_NOT_FOUND', `database ${path} does not exist`, 'check the path, or start the app first', { cause: err });
    }
    throw new PitrError('DB_OPEN_FAILED', `cannot stat database ${path}: ${(err as Error).message}`, 'check permissions', { cause: err });
  }
  if (st.isDirectory()) {
    throw new PitrError('DB_IS_DIRECTORY', `database path ${path} is a directory`, 'pass the path of the SQLite database file, e.g. /data/app.db');
  }
  if (st.size === 0) {
    // SQLite creates the file empty and writes page 1 with the first transaction.
    throw new PitrError('DB_OPEN_FAILED', `database ${path} is empty (no page written yet)`, 'wait until the app has created its schema');
  }
  const header = Buffer.alloc(100);
  // Through the shared handle: closing a descriptor of our own would drop SQLite's locks (see there).
  const file = await acquireDbFile(path);
  try {
    await file.fh.read(header, 0, 100, 0);
  } finally {
    await file.release();
  }
  if (header.toString('latin1', 0, 16) !== SQLITE_MAGIC) {
    throw new PitrError('DB_OPEN_FAILED', `${path} is not a SQLite database (bad header)`, 'pass the path of the SQLite database file');
  }
  const rawPageSize = header.readUInt16BE(16);
  const pageSize = rawPageSize === 1 ? 65536 : rawPageSize;
  const walMode = header[18] === 2 && header[19] === 2;
  const changeCounter = header.readUInt32BE(24);
  const inHeaderSize = header.readUInt32BE(28);
  const validFor = header.readUInt32BE(92);
  const pageCount = inHeaderSize > 0 && changeCounter === validFor ? inHeaderSize : Math.floor(st.size / pageSize);
  return { pageSize, walMode, pageCount, dev: st.dev, ino: st.ino };
}
