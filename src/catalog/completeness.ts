import type { DamagedObject, GenerationEntry, Hole, MarkerClaim } from './catalog.js';

/** An intact object's txid range, for the hole walk. */
interface Held {
  first: number;
  last: number;
  key: string;
}

/**
 * Fill in what the generation is known to hold and what it lacks. The generation's history runs
 * from its oldest intact snapshot (older objects are what retention trims, or need a base that is
 * gone) to newestTxid; every txid in between that no intact object holds is in a hole.
 */
export function assess(g: GenerationEntry, claim: MarkerClaim | undefined): void {
  let newest = 0;
  let newestTime = 0;
  const see = (txid: number, time: number): void => {
    if (txid > newest || (txid === newest && time > newestTime)) {
      newest = txid;
      newestTime = time;
    }
  };
  for (const s of g.snapshots) see(s.txid, s.commitTime);
  for (const s of g.segments) see(s.lastTxid, s.lastTime);
  for (const d of g.damaged) see(d.lastTxid, d.lastTime);
  const intactNewest = Math.max(0, ...g.snapshots.map((s) => s.txid), ...g.segments.map((s) => s.lastTxid));
  if (claim) {
    g.provenTxid = claim.txid;
    see(claim.txid, claim.commitTime);
  }
  g.newestTxid = newest;
  g.newestTime = newestTime;

  const inWindow = (txid: number): boolean => g.windows.some((w) => txid >= w.firstTxid && txid <= w.lastTxid);
  g.orphans = g.segments.filter((s) => !inWindow(s.lastTxid));
  const last = g.windows[g.windows.length - 1];
  g.complete = last !== undefined && last.lastTxid === newest;

  // Segments older than every intact snapshot need a base that is not there.
  const oldestSnap = g.snapshots[0];
  const beforeBase = g.segments.filter((s) => oldestSnap === undefined || s.lastTxid < oldestSnap.txid);
  const damagedBefore = (txid: number): DamagedObject[] => g.damaged.filter((d) => d.kind === 'snapshot' && d.lastTxid <= txid);
  if (beforeBase.length > 0) {
    const first = Math.min(...beforeBase.map((s) => s.firstTxid));
    g.missingBase = {
      generation: g.id,
      firstTxid: first,
      lastTxid: Math.max(...beforeBase.map((s) => s.lastTxid)),
      segments: beforeBase.length,
      ...(oldestSnap ? { nextSnapshotTxid: oldestSnap.txid } : {}),
      damaged: damagedBefore(first - 1),
    };
  }

  // Walk the held ranges from the start of the history and collect what is missing.
  const start = oldestSnap ? oldestSnap.txid : beforeBase.length > 0 ? Math.min(...beforeBase.map((s) => s.firstTxid)) - 1 : undefined;
  g.holes = [];
  if (start === undefined) return;
  const held: Held[] = [
    ...g.snapshots.map((s) => ({ first: s.txid, last: s.txid, key: s.key })),
    ...g.segments.map((s) => ({ first: s.firstTxid, last: s.lastTxid, key: s.key })),
  ]
    .filter((h) => h.last > start || (h.first <= start && h.last >= start))
    .sort((a, b) => a.first - b.first || b.last - a.last);
  let covered = start; // every txid up to here is held (or before the history)
  let coveredBy: string | undefined = oldestSnap?.key;
  for (const h of held) {
    if (h.first > covered + 1) {
      g.holes.push(makeHole(g, covered + 1, h.first - 1, 'gap', coveredBy, h.key));
    }
    if (h.last > covered) {
      covered = h.last;
      coveredBy = h.key;
    }
  }
  if (newest > covered) {
    const hole = makeHole(g, covered + 1, newest, 'tail', coveredBy, undefined);
    hole.provenBy = claim && claim.txid > intactNewest && claim.txid === newest ? 'marker' : 'damaged';
    g.holes.push(hole);
  }
}

function makeHole(g: GenerationEntry, first: number, last: number, kind: Hole['kind'], after: string | undefined, before: string | undefined): Hole {
  const damaged = g.damaged.filter((d) => d.lastTxid >= first && d.firstTxid <= last);
  // Damaged objects claim every txid of the hole when their ranges, merged, cover it.
  let reach = first - 1;
  for (const d of [...damaged].sort((a, b) => a.firstTxid - b.firstTxid)) {
    if (d.firstTxid > reach + 1) break;
    reach = Math.max(reach, d.lastTxid);
  }
  return {
    generation: g.id,
    firstTxid: first,
    lastTxid: last,
    kind,
    ...(after !== undefined ? { after } : {}),
    ...(before !== undefined ? { before } : {}),
    damaged,
    onlyDamaged: damaged.length > 0 && reach >= last,
  };
}
