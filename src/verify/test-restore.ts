import { isPitrError } from '../errors.js';
import type { Catalog } from '../catalog/catalog.js';
import { planRestore, type RestoreTarget } from '../restore/plan.js';
import { restore } from '../restore/restore.js';
import type { StorageClient } from '../storage/storage-client.js';
import { problemFrom, throwIfAborted } from './problems.js';
import type { VerifyProblem } from './verify-report.js';
import type { CatchUp } from '../catalog/catch-ups.js';

export interface Restored {
  generation: string;
  txid: number;
  commitTime: number;
  path: string;
  /** The target was a time inside a downtime: the state restored is the one before this catch-up step. */
  insideDowntime?: CatchUp;
}

export type RestoreOutcome =
  | { ok: true; restored: Restored }
  | { ok: false; why: 'plan' | 'blocked' | 'restore' | 'integrity'; problem: VerifyProblem };

/**
 * restore() the target into `output`, planned around the objects already found bad (`catalog` was
 * built with them as damaged). A target only bad objects hold is 'blocked': the checksum pass has
 * reported them.
 */
export async function tryRestore(
  storage: StorageClient,
  catalog: Catalog,
  target: RestoreTarget,
  output: string,
  bad: ReadonlyMap<string, string>,
  signal: AbortSignal | undefined,
): Promise<RestoreOutcome> {
  try {
    // Refusals first, without a temp file; restore() plans again, from its own look at the replica.
    planRestore(catalog, target, storage.url);
  } catch (err) {
    throwIfAborted(signal, err);
    const problem = problemFrom(err, 'restore');
    if (isPitrError(err, 'OBJECT_CORRUPT')) {
      const object = [...bad.keys()].find((k) => err.message.includes(k));
      return { ok: false, why: 'blocked', problem: { ...problem, ...(object ? { object } : {}) } };
    }
    return { ok: false, why: 'plan', problem };
  }
  try {
    const r = await restore({ storage, output, target, damaged: bad, ...(signal ? { signal } : {}) });
    const inside = r.plan.insideDowntime;
    return { ok: true, restored: { generation: r.plan.generation, txid: r.txid, commitTime: r.commitTime, path: output, ...(inside && { insideDowntime: inside }) } };
  } catch (err) {
    throwIfAborted(signal, err);
    const integrity = isPitrError(err, 'INTEGRITY_CHECK_FAILED');
    return { ok: false, why: integrity ? 'integrity' : 'restore', problem: problemFrom(err, integrity ? 'integrity' : 'restore') };
  }
}

export function describeTarget(t: RestoreTarget): string {
  return t.kind === 'latest' ? 'the latest state' : t.kind === 'txid' ? `txid ${t.txid}` : new Date(t.timeMs).toISOString();
}

