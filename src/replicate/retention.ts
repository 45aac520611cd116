import type { Catalog, DamagedObject, GenerationEntry, SegmentEntry, SnapshotEntry } from '../catalog/catalog.js';

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
      addDamaged(plan, g.damaged);
      continue;
    }
    // The base is an intact snapshot (the catalog keeps damaged ones apart): trimming up to an
    // empty one would leave nothing to restore from.
    let base: SnapshotEntry | undefined;
    for (const s of g.snapshots) if (s.commitTime <= keepFrom && (!base || s.txid > base.txid)) base = s;
    if (!base) continue;
    const baseTxid = base.txid;
    plan.snapshots.push(...g.snapshots.filter((s) => s.txid < baseTxid));
    plan.segments.push(...g.segments.filter((s) => s.lastTxid <= baseTxid));
    addDamaged(plan, g.damaged.filter((d) => (d.kind === 'snapshot' ? d.lastTxid < baseTxid : d.lastTxid <= baseTxid)));
  }
  return plan;
}

/** Damaged objects go with the range they name (as entries of their kind, so callers delete them alike). */
function addDamaged(plan: RetentionPlan, damaged: readonly DamagedObject[]): void {
  for (const d of damaged) {
    if (d.kind === 'snapshot') plan.snapshots.push({ key: d.key, size: d.size, generation: d.generation, txid: d.lastTxid, commitTime: d.lastTime });
    else plan.segments.push({ key: d.key, size: d.size, generation: d.generation, firstTxid: d.firstTxid, lastTxid: d.lastTxid, firstTime: d.firstTime, lastTime: d.lastTime });
  }
}

function lastCommitTime(g: GenerationEntry): number {
  let t = 0;
  for (const s of g.snapshots) t = Math.max(t, s.commitTime);
  for (const s of g.segments) t = Math.max(t, s.lastTime);
  for (const s of g.damaged) t = Math.max(t, s.lastTime);
  return t;
}

/**
 * Pure: the earliest `keepFrom` at which planRetention would delete anything from this catalog,
 * or undefined when nothing in it ever becomes deletable (e.g. one snapshot and its segments).
 * With no new objects the plan only changes when keepFrom passes a snapshot's commit time or a
 * generation's last commit, and it only grows as keepFrom grows, so a binary search over those
 * moments finds it. The agent uses this to skip LISTing an idle replica until something is due.
 */
export function nextRetentionKeepFrom(catalog: Catalog, protect?: string): number | undefined {
  const moments = new Set<number>();
  for (const g of catalog.generations) {
    for (const s of g.snapshots) moments.add(s.commitTime);
    moments.add(lastCommitTime(g) + 1);
  }
  const sorted = [...moments].sort((a, b) => a - b);
  const deletes = (keepFrom: number): boolean => {
    const p = planRetention(catalog, keepFrom, protect);
    return p.snapshots.length + p.segments.length > 0;
  };
  if (sorted.length === 0 || !deletes(sorted[sorted.length - 1] as number)) return undefined;
  let lo = 0;
  let hi = sorted.length - 1;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (deletes(sorted[mid] as number)) hi = mid;
    else lo = mid + 1;
  }
  return sorted[lo];
}
