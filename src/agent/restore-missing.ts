import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { isPitrError } from '../errors.js';
import type { Logger } from '../log.js';
import type { DirDbSpec, PathDbSpec } from '../config/config-types.js';
import { openStorage } from '../storage/open-storage.js';
import { restore } from '../restore/restore.js';
import { fillTemplate } from './dir-discovery.js';

/**
 * --restore-if-missing for one database file: when it does not exist, restore the latest state of
 * `replicaUrl` into it, before the app or the agent opens it. A replica that does not exist or
 * holds nothing is a first deploy: the database is left missing (the app creates it) and false
 * returned. Any other failure (a damaged replica, no permission) is an error: starting the app on an
 * empty database when a backup exists would look like data loss.
 */
export async function restoreIfMissing(dbPath: string, replicaUrl: string, log: Logger): Promise<boolean> {
  if (existsSync(dbPath)) return false;
  const storage = await openStorage(replicaUrl);
  try {
    const r = await restore({ storage, output: dbPath, target: { kind: 'latest' }, log });
    log.info('restored a missing database from its replica before starting', { db: dbPath, replica: replicaUrl, txid: r.txid, generation: r.plan.generation });
    return true;
  } catch (err) {
    if (isPitrError(err, 'REPLICA_NOT_FOUND') || isPitrError(err, 'REPLICA_EMPTY')) {
      log.info('the database is missing and its replica holds nothing yet: a first deploy; the app creates it', { db: dbPath, replica: replicaUrl });
      return false;
    }
    throw err;
  } finally {
    await storage.close().catch(() => {});
  }
}

/** --restore-if-missing for a `path` entry: from its first replica. */
export async function restorePathEntry(spec: PathDbSpec, log: Logger): Promise<void> {
  const first = spec.replicas[0]?.url ?? `${spec.path}-replica`;
  await restoreIfMissing(spec.path, first, log);
}

/**
 * --restore-if-missing for a `dir` entry: every {name} its first replica holds whose file is
 * missing. The names are read from one LIST of the replica root (the template cut at {name}); the
 * file name is {name} + the pattern's extension, so the pattern must be `*.ext` (or `*`).
 */
export async function restoreDirEntry(spec: DirDbSpec, log: Logger): Promise<void> {
  const template = spec.replicas[0]?.url;
  if (template === undefined) return;
  const at = template.indexOf('{name}');
  const ext = /^\*(\.[^*?[\]/]*)?$/.exec(spec.pattern);
  if (at < 0 || ext === null) {
    log.warn('restore-if-missing: cannot tell which databases this directory entry had; skipped', {
      dir: spec.dir,
      hint: 'use a pattern of the form "*.db" and a replica URL with {name} as a whole path segment',
    });
    return;
  }
  const rootUrl = template.slice(0, at);
  const after = template.slice(at + '{name}'.length).split('?')[0] ?? '';
  const query = template.includes('?') ? template.slice(template.indexOf('?')) : '';
  let names: Set<string>;
  const root = await openStorage(`${rootUrl.split('?')[0]}${query}`);
  try {
    names = new Set();
    for (const o of await root.list('')) {
      const i = o.key.indexOf(`${after.replace(/^\//, '')}${after ? '/' : ''}generations/`);
      if (i > 0) names.add(o.key.slice(0, i).replace(/\/$/, ''));
    }
  } catch (err) {
    if (isPitrError(err, 'REPLICA_NOT_FOUND')) return;
    throw err;
  } finally {
    await root.close().catch(() => {});
  }
  for (const name of [...names].sort()) {
    const dbPath = join(spec.dir, `${name}${ext[1] ?? ''}`);
    await restoreIfMissing(dbPath, fillTemplate(template, name), log);
  }
}
