import { stat } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { PitrError } from '../errors.js';
import { openStorage, parseReplicaUrl } from '../storage/open-storage.js';
import type { StorageClient } from '../storage/storage-client.js';
import { readLockHolder } from '../replicate/state-lock.js';
import { looksLikeSqliteDatabase } from '../util/sqlite-file.js';

/**
 * openStorage for the commands that read a replica (list, restore, status, verify), refusing a
 * path that names a file: above all the database itself (`pitr list /data/app.db`), which gets
 * NOT_A_REPLICA with the replica the user probably meant, never a hint to remove anything.
 */
export async function openReplicaToRead(input: string): Promise<StorageClient> {
  const parsed = parseReplicaUrl(input);
  if (parsed.scheme === 'file') {
    let isFile = false;
    try {
      isFile = !(await stat(parsed.path)).isDirectory();
    } catch {
      // missing or unreadable: the storage reports it as it always has (REPLICA_NOT_FOUND, ...)
    }
    if (isFile) throw await notAReplica(parsed.path);
  }
  return openStorage(input);
}

async function notAReplica(path: string): Promise<PitrError> {
  if (!(await looksLikeSqliteDatabase(path))) {
    return new PitrError('NOT_A_REPLICA', `${path} is a file, not a replica`, 'a replica is the directory (or s3:// URL) that `pitr replicate DB REPLICA` writes to');
  }
  const guesses = await replicasOf(path);
  return new PitrError(
    'NOT_A_REPLICA',
    `${path} is a SQLite database, not a replica`,
    guesses.length > 0
      ? `its replica is probably ${guesses.join(' or ')}: run the command with that instead`
      : `give the replica its agent writes to (\`pitr replicate ${path}\` writes to ${path}-replica by default)`,
  );
}

/** Replicas of the database at `dbPath` that exist or that its agent last named, best guess first. */
async function replicasOf(dbPath: string): Promise<string[]> {
  const out: string[] = [];
  const holder = readLockHolder(`${dbPath}-pitr`);
  // A path in the hint is easier to paste than a file URL; S3 URLs stay URLs.
  for (const url of holder?.replicas ?? []) out.push(url.startsWith('file://') ? fileURLToPath(url) : url);
  const byDefault = `${dbPath}-replica`;
  try {
    if ((await stat(byDefault)).isDirectory() && !out.includes(byDefault)) out.unshift(byDefault);
  } catch {
    // no default replica
  }
  return out.filter((u, i) => out.indexOf(u) === i);
}
