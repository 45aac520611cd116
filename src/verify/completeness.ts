import { latestState, type Catalog } from '../catalog/catalog.js';
import { describeHole, describeLost, describeMissingBase, describeOrphan } from '../catalog/describe.js';
import type { VerifyProblem } from './verify-report.js';

/** A completeness problem with an identity, to tell a lasting one from a passing state. */
export interface Identified {
  id: string;
  problem: VerifyProblem;
}

/**
 * Every hole, orphan, missing base snapshot and lost generation of the catalog. Holes and bases
 * that only damaged objects explain are left out: the checksum pass reports those objects.
 */
export function completenessProblems(c: Catalog): Identified[] {
  const out: Identified[] = [];
  const hint = 'restore from another replica that holds these transactions; points outside them still restore (see `pitr list`)';
  const latest = latestState(c);
  if (latest.lost) {
    const id = 'id' in latest.lost ? latest.lost.id : latest.lost.generation;
    out.push({ id: `lost:${id}`, problem: { check: 'completeness', code: 'REPLICA_INCOMPLETE', message: describeLost(latest.lost), hint } });
  }
  for (const g of c.generations) {
    if (g.missingBase && g.missingBase.damaged.length === 0) {
      const m = g.missingBase;
      out.push({ id: `base:${g.id}:${m.firstTxid}`, problem: { check: 'completeness', code: 'REPLICA_INCOMPLETE', message: describeMissingBase(m), hint } });
    }
    for (const h of g.holes) {
      if (h.onlyDamaged) continue;
      const object = h.after ?? h.before;
      out.push({
        id: `hole:${g.id}:${h.firstTxid}:${h.lastTxid}`,
        problem: { check: 'completeness', code: 'REPLICA_INCOMPLETE', message: describeHole(h), hint, ...(object ? { object } : {}) },
      });
    }
    // Orphans that need the missing base are counted in its problem; those after a hole are named one by one.
    const base = g.missingBase && g.missingBase.damaged.length === 0 ? g.missingBase : undefined;
    for (const o of g.orphans) {
      if (base && o.lastTxid <= base.lastTxid) continue;
      out.push({ id: `orphan:${o.key}`, problem: { check: 'completeness', code: 'REPLICA_INCOMPLETE', object: o.key, message: describeOrphan(o), hint } });
    }
  }
  return out;
}
