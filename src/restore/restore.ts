import { open, rename, unlink, type FileHandle } from 'node:fs/promises';
import { dirname, basename, join, resolve } from 'node:path';
import { randomBytes } from 'node:crypto';
import type { PitrError } from '../errors.js';
import type { StorageClient } from '../storage/storage-client.js';
import type { DamagedObject } from '../catalog/catalog.js';
import { planRestore, type RestorePlan, type RestoreTarget } from './plan.js';
import { loadReplica } from './replica-view.js';
import { withReplanning } from './replan.js';
import { buildInto, resolveEnd, type Applied } from './apply.js';
import { OUTPUT_DIR, integrityCheck, outputInUse, outputProblem, removeSidecars } from './output.js';
import { fsyncDir } from '../util/fs-atomic.js';
import { fsProblem } from '../util/writable-dir.js';
import { silentLogger, type Logger } from '../log.js';

export interface RestoreOptions {
  storage: StorageClient;
  output: string;
  target: RestoreTarget;
  force?: boolean;
  dryRun?: boolean;
  signal?: AbortSignal;
  log?: Logger;
  /** Called as the restore advances (often: rate-limit any drawing). */
  onProgress?: (p: RestoreProgress) => void;
  /** Objects already known to be bad (key -> why): planned around from the start (verify's checksum pass). */
  damaged?: ReadonlyMap<string, string>;
}

import type { RestoreProgress } from './restore-progress.js';
export type { RestoreProgress } from './restore-progress.js';

export interface RestoreResult {
  output: string;
  dryRun: boolean;
  plan: RestorePlan;
  /** The transaction the result ends at, and its commit time. */
  txid: number;
  commitTime: number;
  pageSize?: number;
  dbSizePages?: number;
  durationMs: number;
  /** A dry run only: why the real run would be refused (it is not thrown, so the plan can be shown). */
  refused?: PitrError;
  /** Where the time went (absent for a dry run); they add up to about durationMs. */
  phases?: RestorePhases;
  /** Damaged objects the restore did not use, with why (planned around; see plan.skipped). */
  skipped: DamagedObject[];
  /** Things worth saying that are not failures (an unreadable marker, ...). */
  notes: string[];
}

/** Wall time of each step of a restore, in milliseconds. */
export interface RestorePhases {
  /** LIST the replica, build the catalog, plan. */
  planMs: number;
  /** Fetch, verify and decompress the objects, write the pages. */
  applyMs: number;
  /** PRAGMA integrity_check of the written file (the fsync runs meanwhile). */
  checkMs: number;
  /** The rest of the fsync, the rename into place and the directory fsync. */
  syncMs: number;
}

/**
 * Rebuild the database at the target into `output`. The file appears only complete and verified:
 * pages go to a temp file next to it, which is fsync'd, passes PRAGMA integrity_check, and is then
 * renamed into place. Any failure removes the temp file and leaves `output` untouched.
 */
export async function restore(opts: RestoreOptions): Promise<RestoreResult> {
  const started = performance.now();
  const log = opts.log ?? silentLogger;
  const output = resolve(opts.output);
  // A dry run checks the output too (reading only), and says what the real run would refuse.
  const refused = await outputProblem(output, opts.force ?? false);
  if (refused && !opts.dryRun) throw refused;
  const damaged = new Map(opts.damaged ?? []);
  const view = await loadReplica(opts.storage, { ...(opts.signal ? { signal: opts.signal } : {}), damaged });
  // Plan once up front: a refusal must come before a temp file exists.
  const first = planRestore(view.catalog, opts.target, opts.storage.url);
  const planned = performance.now();
  log.debug('restore plan', { generation: first.generation, snapshot: first.snapshot.key, segments: first.segments.length, bytes: first.bytes });
  if (opts.dryRun) {
    const { plan, value: end } = await withReplanning(view, opts.target, opts.storage.url, damaged, log, (p) => resolveEnd(opts.storage, p, opts.signal));
    return {
      output,
      dryRun: true,
      plan,
      txid: end.txid,
      commitTime: end.commitTime,
      durationMs: performance.now() - started,
      skipped: plan.skipped,
      notes: view.notes,
      ...(refused ? { refused } : {}),
    };
  }

  const tmp = join(dirname(output), `.${basename(output)}.pitr-restore-${randomBytes(4).toString('hex')}`);
  try {
    let applied: Applied;
    let plan: RestorePlan;
    let built: number;
    let checked: number;
    let fh: FileHandle;
    try {
      fh = await open(tmp, 'wx');
    } catch (err) {
      throw fsProblem(err, dirname(output), OUTPUT_DIR, 'create files in');
    }
    try {
      let tries = 0;
      ({ plan, value: applied } = await withReplanning(view, opts.target, opts.storage.url, damaged, log, async (p) => {
        // A retry starts from an empty file: pages of the bad attempt must not survive.
        if (tries++ > 0) await fh.truncate(0);
        return buildInto(fh, opts.storage, p, opts.signal, opts.onProgress);
      }));
      built = performance.now();
      opts.onProgress?.({ phase: 'check', doneBytes: plan.bytes, totalBytes: plan.bytes, segmentsDone: plan.segments.length, segments: plan.segments.length });
      // The fsync runs on libuv's pool while integrity_check reads the same pages on this thread.
      const synced = fh.sync();
      synced.catch(() => {});
      try {
        integrityCheck(tmp, output);
      } finally {
        checked = performance.now();
        await synced;
      }
    } finally {
      await fh.close();
    }
    if (opts.force) {
      // Again at the last moment: the app may have been started while the restore ran.
      const inUse = outputInUse(output);
      if (inUse) throw inUse;
      await removeSidecars(output);
    }
    await rename(tmp, output);
    await fsyncDir(dirname(output));
    const ended = performance.now();
    return {
      output,
      dryRun: false,
      plan,
      txid: applied.txid,
      commitTime: applied.commitTime,
      pageSize: applied.pageSize,
      dbSizePages: applied.dbSizePages,
      durationMs: ended - started,
      phases: { planMs: planned - started, applyMs: built - planned, checkMs: checked - built, syncMs: ended - checked },
      skipped: plan.skipped,
      notes: view.notes,
    };
  } catch (err) {
    await unlink(tmp).catch(() => {});
    await unlink(`${tmp}-wal`).catch(() => {});
    await unlink(`${tmp}-shm`).catch(() => {});
    throw err;
  }
}
