import type { Catalog, GenerationEntry, SegmentEntry, SnapshotEntry } from '../catalog/catalog.js';

export interface RetentionPlan {
  snapshots: SnapshotEntry[];
  segments: SegmentEntry[];
}

/**
 * Pure: what may be deleted so that every point from `keepFrom` (ms) onward stays restorable.
 * - Generations whose last commit is before keepFrom go, except the newest generation and the one
 *   being written (`protect`).
 * - In the generation that spans keepFrom, the newest snapshot at or before keepFrom is the base
 *   every later point can start from: older snapshots and segments wholly before it go.
 * Nothing else is touched.
 */
export function planRetention(catalog: Catalog, keepFrom: number, protect?: string): RetentionPlan {
  const plan: RetentionPlan = { snapshots: [], segments: [] };
  const gens = catalog.generations;
  const newest = gens[gens.length - 1]?.id;
  for (const g of gens) {
    const last = lastCommitTime(g);
    if (g.id !== newest && g.id !== protect && last < keepFrom) {
      plan.snapshots.push(...g.snapshots);
      plan.segments.push(...g.segments);
      continue;
    }
    let base: SnapshotEntry | undefined;
    for (const s of g.snapshots) if (s.commitTime <= keepFrom && (!base || s.txid > base.txid)) base = s;
    if (!base) continue;
    const baseTxid = base.txid;
    plan.snapshots.push(...g.snapshots.filter((s) => s.txid < baseTxid));
    plan.segments.push(...g.segments.filter((s) => s.lastTxid <= baseTxid));
  }
  return plan;
}

function lastCommitTime(g: GenerationEntry): number {
  let t = 0;
  for (const s of g.snapshots) t = Math.max(t, s.commitTime);
  for (const s of g.segments) t = Math.max(t, s.lastTime);
  return t;
}
