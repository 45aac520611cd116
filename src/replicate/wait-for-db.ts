import { stat } from 'node:fs/promises';
import { PitrError, errnoCode, isPitrError } from '../errors.js';
import type { Logger } from '../log.js';

/**
 * Resolves once the database exists and is not empty (or `signal` aborts): an app's new database
 * is an empty file until its first transaction writes page 1. `waiting` is told once, when it has
 * to wait: the app (an exec child) may be what creates the database, and must not be held back.
 */
export async function waitForDb(dbPath: string, signal: AbortSignal, log: Logger, waiting?: () => void): Promise<void> {
  let told = false;
  while (!signal.aborted) {
    let empty = false;
    try {
      const st = await stat(dbPath);
      empty = true;
      if (st.isDirectory()) {
        throw new PitrError('DB_IS_DIRECTORY', `database path ${dbPath} is a directory`, 'pass the path of the SQLite database file, e.g. /data/app.db');
      }
      if (st.size > 0) return;
    } catch (err) {
      if (isPitrError(err) || errnoCode(err) !== 'ENOENT') throw err;
    }
    if (!told) {
      log.info(empty ? 'the database file is empty (0 bytes): waiting for the app\'s first write' : 'waiting for the database to be created', { path: dbPath });
      told = true;
      waiting?.();
    }
    await new Promise((r) => setTimeout(r, 500));
  }
}
