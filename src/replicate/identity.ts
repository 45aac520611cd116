import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdtemp, open, readFile, rm } from 'node:fs/promises';
import { hostname } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';

import { errnoCode, isPitrError, PitrError } from '../errors.js';
import type { Logger } from '../log.js';
import { loadCatalog } from '../restore/replica-view.js';
import { restore } from '../restore/restore.js';
import { hasConditional, type StorageClient } from '../storage/storage-client.js';
import { tempPathFor, writeLocalFileDurably } from '../util/fs-atomic.js';

/** Which database a replica serves: written once, at the replica root, by the first agent. */
export const IDENTITY_KEY = 'identity.json';
/** In the agent's state directory: the id of the database it replicates. */
const DATABASE_ID_FILE = 'database-id';

export interface IdentityRecord {
  version: 1;
  /** Random, 16 hex digits; also kept in the agent's state directory. */
  databaseId: string;
  /** The path and host the database was first replicated from (for people; never compared). */
  path: string;
  host: string;
  /** The database's page size then (0 when it did not exist yet). */
  pageSize: number;
  createdAt: string;
}

export interface IdentityOptions {
  dbPath: string;
  stateDir: string;
  /** Claim the replica for this database even when it serves another (the identity is rewritten). */
  takeover: boolean;
  log: Logger;
}

/**
 * Refuse a replica that serves another database (REPLICA_OWNED_BY_OTHER_DB), unless `takeover`.
 * The agent holds the replica's lease when it calls this. The rule:
 * - no identity.json: this database claims the replica (create-if-absent);
 * - the state directory's database id equals the replica's: the same database;
 * - the state directory has no id (lost state, a new container, a database just restored): the
 *   database is the same one only if its content is the replica's newest state, page for page
 *   (the newest state is restored to a temp file in the state directory and compared with a copy
 *   of the database taken through SQLite's backup API; the header's change counters are not
 *   compared). Then the replica's id is adopted. A database that has moved on since the replica's
 *   newest state cannot be told from another database: it needs `--takeover`.
 * - otherwise (another id): refused.
 */
export async function checkReplicaIdentity(replica: StorageClient, opts: IdentityOptions): Promise<void> {
  if (!hasConditional(replica)) return;
  const idFile = join(opts.stateDir, DATABASE_ID_FILE);
  let localId = await readLocalId(idFile);
  for (let attempt = 1; attempt <= 3; attempt++) {
    let cur: { record: IdentityRecord; etag: string } | undefined;
    try {
      const got = await replica.getVersioned(IDENTITY_KEY);
      cur = { record: decode(got.body, replica.url), etag: got.etag };
    } catch (err) {
      if (!isPitrError(err, 'OBJECT_NOT_FOUND')) throw err;
    }
    if (cur !== undefined && cur.record.databaseId === localId) return;
    if (cur !== undefined && !opts.takeover && localId === undefined) {
      if (await sameContent(replica, opts)) {
        opts.log.info('no database id in the state directory, but the database is the replica\'s newest state: same database', {
          replica: replica.url,
          databaseId: cur.record.databaseId,
        });
        await writeLocalId(idFile, cur.record.databaseId);
        return;
      }
    }
    if (cur !== undefined && !opts.takeover) throw ownedError(replica.url, cur.record, opts, localId !== undefined);
    if (cur !== undefined) {
      opts.log.warn('taking over a replica that served another database (--takeover): it serves this one from now on', {
        replica: replica.url,
        previousDatabase: `${cur.record.path} on ${cur.record.host} (id ${cur.record.databaseId})`,
      });
    }
    localId ??= randomBytes(8).toString('hex');
    await writeLocalId(idFile, localId);
    const record: IdentityRecord = {
      version: 1,
      databaseId: localId,
      path: opts.dbPath,
      host: hostname(),
      pageSize: await pageSizeOf(opts.dbPath),
      createdAt: new Date().toISOString(),
    };
    try {
      await replica.putConditional(IDENTITY_KEY, Buffer.from(`${JSON.stringify(record, null, 2)}\n`), cur === undefined ? { ifNoneMatch: '*' } : { ifMatch: cur.etag });
      return;
    } catch (err) {
      if (!isPitrError(err, 'PRECONDITION_FAILED')) throw err;
    }
  }
  throw new PitrError('REPLICA_OWNED_BY_OTHER_DB', `${IDENTITY_KEY} in ${replica.url} keeps changing`, 'Check that only one agent replicates to this replica.');
}

function ownedError(url: string, r: IdentityRecord, opts: IdentityOptions, hadId: boolean): PitrError {
  const why = hadId
    ? 'this agent\'s state directory names another database'
    : 'this agent has no database id in its state directory and the database is not the replica\'s newest state';
  return new PitrError(
    'REPLICA_OWNED_BY_OTHER_DB',
    `replica ${url} serves another database: ${r.path} on ${r.host} (id ${r.databaseId}, since ${r.createdAt}); ${why}`,
    `Give ${opts.dbPath} its own replica (another directory or prefix). If the old database is really gone and this one ` +
      'replaces it, run pitr replicate with --takeover.',
  );
}

async function readLocalId(file: string): Promise<string | undefined> {
  try {
    const text = (await readFile(file, 'utf8')).trim();
    return /^[0-9a-f]{16}$/.test(text) ? text : undefined;
  } catch (err) {
    if (errnoCode(err) === 'ENOENT') return undefined;
    throw err;
  }
}

async function writeLocalId(file: string, id: string): Promise<void> {
  await writeLocalFileDurably(tempPathFor(file), file, `${id}\n`);
}

async function pageSizeOf(dbPath: string): Promise<number> {
  try {
    const fh = await open(dbPath, 'r');
    try {
      const header = Buffer.alloc(18);
      const { bytesRead } = await fh.read(header, 0, 18, 0);
      if (bytesRead < 18) return 0;
      const v = header.readUInt16BE(16);
      return v === 1 ? 65536 : v;
    } finally {
      await fh.close();
    }
  } catch {
    return 0;
  }
}

/** True when the database's content equals the replica's newest state, page for page. */
async function sameContent(replica: StorageClient, opts: IdentityOptions): Promise<boolean> {
  if (!existsSync(opts.dbPath)) return false;
  const catalog = await loadCatalog(replica);
  if (catalog.generations.length === 0) return false;
  const tmp = await mkdtemp(join(opts.stateDir, '.identity-check-'));
  try {
    const restored = join(tmp, 'replica.db');
    await restore({ storage: replica, output: restored, target: { kind: 'latest' } });
    const copy = join(tmp, 'database.db');
    const db = new Database(opts.dbPath, { readonly: true, fileMustExist: true });
    try {
      await db.backup(copy);
    } finally {
      db.close();
    }
    return await sameFiles(restored, copy);
  } catch (err) {
    opts.log.warn('could not compare the database with the replica\'s newest state', { replica: replica.url, err });
    return false;
  } finally {
    await rm(tmp, { recursive: true, force: true });
  }
}

/**
 * Byte-equal files, 1 MiB at a time (a database may be larger than memory), except the header
 * bytes the copy's own commit rewrites: file format versions, change counter, schema cookie (the
 * backup API increments the destination's), version-valid-for and SQLite version number.
 */
async function sameFiles(pathA: string, pathB: string): Promise<boolean> {
  const [fa, fb] = await Promise.all([open(pathA, 'r'), open(pathB, 'r')]);
  try {
    const [sa, sb] = await Promise.all([fa.stat(), fb.stat()]);
    if (sa.size !== sb.size || sa.size < 100) return false;
    const chunk = 1024 * 1024;
    const a = Buffer.alloc(chunk);
    const b = Buffer.alloc(chunk);
    for (let at = 0; at < sa.size; at += chunk) {
      const n = Math.min(chunk, sa.size - at);
      const [ra, rb] = await Promise.all([fa.read(a, 0, n, at), fb.read(b, 0, n, at)]);
      if (ra.bytesRead !== n || rb.bytesRead !== n) return false;
      if (at === 0) {
        for (const [from, to] of [[18, 20], [24, 28], [40, 44], [92, 100]] as const) {
          a.fill(0, from, to);
          b.fill(0, from, to);
        }
      }
      if (!a.subarray(0, n).equals(b.subarray(0, n))) return false;
    }
    return true;
  } finally {
    await Promise.all([fa.close(), fb.close()]);
  }
}

function decode(bytes: Uint8Array, url: string): IdentityRecord {
  let v: Partial<IdentityRecord> | undefined;
  try {
    v = JSON.parse(Buffer.from(bytes).toString('utf8')) as Partial<IdentityRecord>;
  } catch {
    v = undefined;
  }
  if (v === undefined || v === null || typeof v !== 'object' || v.version !== 1 || typeof v.databaseId !== 'string') {
    throw new PitrError('OBJECT_CORRUPT', `${IDENTITY_KEY} in ${url} is not a pitr identity object`,
      `Remove ${IDENTITY_KEY} from the replica if it is not pitr's, or use another replica.`);
  }
  return { path: '?', host: '?', pageSize: 0, createdAt: '?', ...v } as IdentityRecord;
}
