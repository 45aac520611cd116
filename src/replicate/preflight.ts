import { realpathSync } from 'node:fs';
import { stat } from 'node:fs/promises';
import { dirname, relative, isAbsolute } from 'node:path';
import { PitrError, errnoCode } from '../errors.js';
import type { Logger } from '../log.js';
import { parseReplicaUrl, type ReplicaUrl } from '../storage/open-storage.js';
import { looksLikeSqliteDatabase } from '../util/sqlite-file.js';
import { ensureWritableDir, type DirRole } from '../util/writable-dir.js';
import { StateLock } from './state-lock.js';
import { remoteFsOf } from '../util/remote-fs.js';

/**
 * What `pitr replicate` checks before the agent starts, so that a mistake is an error at once
 * rather than a wait or an endless retry: the database's directory, the replicas (none twice,
 * none that is the database, its directory or the state directory, every directory one writable),
 * and the state directory (writable, and locked against a second agent).
 */

/** Where the agent keeps its state when --state-dir is not given; also where the database's lock is. */
export function defaultStateDir(dbPath: string): string {
  return `${dbPath}-pitr`;
}

/**
 * DB_DIR_NOT_FOUND when the database's directory is missing (the agent waits for the app to
 * create the database, not its directory), DB_IS_DIRECTORY for a directory. Says whether the
 * file is there and empty (an app's new database until its first write).
 */
export async function checkDatabasePath(dbPath: string): Promise<{ exists: boolean; empty: boolean }> {
  const dir = dirname(dbPath);
  try {
    const st = await stat(dir);
    if (!st.isDirectory()) throw new Error('not a directory');
  } catch (err) {
    throw new PitrError(
      'DB_DIR_NOT_FOUND',
      `the database's directory ${dir} ${errnoCode(err) === 'ENOENT' ? 'does not exist' : 'is not a directory'}`,
      'check the path of the database; pitr waits for the app to create the database file, not its directory',
      { cause: err },
    );
  }
  try {
    const st = await stat(dbPath);
    if (st.isDirectory()) {
      throw new PitrError('DB_IS_DIRECTORY', `database path ${dbPath} is a directory`, 'pass the path of the SQLite database file, e.g. /data/app.db');
    }
    return { exists: true, empty: st.size === 0 };
  } catch (err) {
    if (err instanceof PitrError) throw err;
    if (errnoCode(err) === 'ENOENT') return { exists: false, empty: false };
    throw err;
  }
}

/**
 * Parse the replica arguments and refuse the ones that cannot be meant (BAD_REPLICA): the same
 * replica twice, the database file, the database's own directory, the state directory or a
 * directory inside it, and an existing file. Does not write.
 */
export async function checkReplicas(urls: readonly string[], dbPath: string, stateDir: string): Promise<ReplicaUrl[]> {
  const parsed: ReplicaUrl[] = [];
  const seen = new Map<string, string>();
  for (const input of urls) {
    const r = parseReplicaUrl(input);
    const id = r.scheme === 'file' ? `file:${canonical(r.path)}` : r.url;
    const earlier = seen.get(id);
    if (earlier !== undefined) {
      throw new PitrError(
        'BAD_REPLICA',
        earlier === input ? `replica ${input} is given twice` : `replicas ${earlier} and ${input} are the same place`,
        'give each replica once; the agent ships every commit to each replica it is given',
      );
    }
    seen.set(id, input);
    if (r.scheme === 'file') await checkFileReplica(r.path, input, dbPath, stateDir);
    parsed.push(r);
  }
  return parsed;
}

async function checkFileReplica(path: string, input: string, dbPath: string, stateDir: string): Promise<void> {
  const p = canonical(path);
  if (p === canonical(dbPath)) {
    throw new PitrError('BAD_REPLICA', `replica ${input} is the database itself`, 'a replica is a directory for pitr\'s objects, e.g. /backups/app (by default DB-replica next to the database)');
  }
  if (p === canonical(dirname(dbPath))) {
    throw new PitrError(
      'BAD_REPLICA',
      `replica ${input} is the database's own directory ${dirname(dbPath)}`,
      'a replica there would mix pitr\'s objects with the app\'s files on the same disk; give a directory of its own, ideally on another disk or machine (e.g. /backups/app), or an s3:// URL',
    );
  }
  if (inside(p, canonical(stateDir))) {
    throw new PitrError('BAD_REPLICA', `replica ${input} is inside the state directory ${stateDir}`, 'the state directory holds the agent\'s spool; give the replica a directory of its own');
  }
  let isFile = false;
  try {
    isFile = !(await stat(path)).isDirectory();
  } catch {
    // missing: made later (ensureFileReplica)
  }
  if (isFile) {
    const what = (await looksLikeSqliteDatabase(path)) ? 'a SQLite database' : 'a file';
    throw new PitrError('BAD_REPLICA', `replica ${input} is ${what}, not a directory`, 'a replica is a directory for pitr\'s objects (it is made if missing); give another path');
  }
}

const REPLICA_DIR: DirRole = { name: 'replica directory', notDirCode: 'BAD_REPLICA', otherwise: 'or give another replica' };
const STATE_DIR: DirRole = { name: 'state directory', notDirCode: 'STATE_DIR_INVALID', otherwise: 'or pass --state-dir with a directory pitr can write on a local disk' };

/** How long the start waits for a replica directory to answer before it goes on without knowing. */
const REPLICA_CHECK_MS = 10_000;

/**
 * Make a directory replica and prove it writable: PERMISSION_DENIED (or BAD_REPLICA) now instead
 * of retries forever. A directory that does not answer (a hung network mount) is not an error
 * here: the agent starts, and its shipper retries as it does for any outage.
 */
export async function ensureFileReplica(path: string, log: Logger): Promise<void> {
  const check = ensureWritableDir(path, REPLICA_DIR);
  let timer: NodeJS.Timeout | undefined;
  const slow = new Promise<'slow'>((resolve) => (timer = setTimeout(() => resolve('slow'), REPLICA_CHECK_MS)));
  try {
    if ((await Promise.race([check, slow])) === 'slow') {
      check.catch(() => {});
      log.warn(`replica directory ${path} did not answer within ${REPLICA_CHECK_MS / 1000} s; starting anyway, uploads will be retried`, { replica: path });
    }
  } finally {
    clearTimeout(timer);
  }
}

/**
 * Make the state directory and lock it against a second agent; also lock the database itself
 * (in its default state directory) when the state directory is another one, so that two agents
 * with different --state-dir cannot capture one database either. Release the returned locks when
 * the agent is done; the kernel releases them if the process dies.
 */
export async function lockState(
  opts: { dbPath: string; stateDir: string; version: string },
  log: Logger,
): Promise<StateLock[]> {
  const holder = { db: opts.dbPath, stateDir: opts.stateDir, version: opts.version };
  const locks: StateLock[] = [];
  try {
    const dbDir = defaultStateDir(opts.dbPath);
    // The same directory is locked once: a second open of its lock file would drop the first's lock.
    if (canonical(dbDir) !== canonical(opts.stateDir)) {
      let dbDirReady = true;
      try {
        await ensureWritableDir(dbDir, { ...STATE_DIR, name: 'directory' });
      } catch (err) {
        dbDirReady = false;
        log.warn(`cannot make ${dbDir} for the database's lock; a second agent on this database with yet another --state-dir would not be refused`, { err });
      }
      if (dbDirReady) locks.push(await StateLock.acquire(dbDir, holder, `database ${opts.dbPath}`));
    }
    await ensureWritableDir(opts.stateDir, STATE_DIR);
    locks.push(await StateLock.acquire(opts.stateDir, holder, `state directory ${opts.stateDir}`));
  } catch (err) {
    for (const l of locks) l.release();
    throw err;
  }
  return locks;
}

/** The real path of `p` (symlinks resolved) as far as it exists, with the rest appended. */
function canonical(p: string): string {
  const rest: string[] = [];
  for (let at = p; ; at = dirname(at)) {
    try {
      const real = realpathSync(at);
      return rest.length === 0 ? real : `${real}/${rest.reverse().join('/')}`;
    } catch {
      if (dirname(at) === at) return p;
      rest.push(at.slice(dirname(at).length).replace(/^\//, ''));
    }
  }
}

/** True when `p` is `dir` or inside it (both canonical). */
function inside(p: string, dir: string): boolean {
  const rel = relative(dir, p);
  return rel === '' || (!rel.startsWith('..') && !isAbsolute(rel));
}

/**
 * A database or state directory on a network or FUSE mount works until it does not (see
 * remote-fs.ts): say so at start, once, rather than refuse a setup that may be deliberate.
 */
export async function warnIfRemote(dbPath: string, stateDir: string, log: Logger): Promise<void> {
  const dbFs = await remoteFsOf(dirname(dbPath));
  if (dbFs !== undefined) {
    log.warn(`the database is on a ${dbFs} file system: SQLite's WAL mode needs every connection on the same host as the file, and its shared-memory index does not work across a network mount`, {
      fs: dbFs,
      hint: 'keep the database, its -wal and -shm files on a local disk',
    });
  }
  const stateFs = await remoteFsOf(stateDir);
  if (stateFs !== undefined) {
    log.warn(`the state directory ${stateDir} is on a ${stateFs} file system: the agent writes its spool and position there with synchronous calls, so a mount that hangs stops the agent`, {
      fs: stateFs,
      hint: 'point --state-dir at a local disk',
    });
  }
}
