import type { Catalog, DamagedObject, GenerationEntry, Hole, MissingBase, MissingGeneration, SegmentEntry, Window } from './catalog.js';

/**
 * The words every command uses for what a replica lacks (pure). One sentence per problem, naming
 * the transactions and the objects, so restore, verify, status and list say the same thing.
 */

function iso(ms: number): string {
  return new Date(ms).toISOString();
}

export function txids(first: number, last: number): string {
  return first === last ? `txid ${first}` : `txids ${first}..${last}`;
}

export function describeDamaged(d: DamagedObject): string {
  return `${d.key} (${d.reason})`;
}

function listDamaged(ds: readonly DamagedObject[]): string {
  return ds.map(describeDamaged).join(', ');
}

export function describeHole(h: Hole): string {
  const what = `${txids(h.firstTxid, h.lastTxid)} of generation ${h.generation}`;
  const are = h.firstTxid === h.lastTxid ? 'is' : 'are';
  if (h.onlyDamaged) return `${what} ${are} only in damaged objects: ${listDamaged(h.damaged)}`;
  const damaged = h.damaged.length > 0 ? `; damaged objects name some of them: ${listDamaged(h.damaged)}` : '';
  if (h.kind === 'tail') {
    const proof = h.provenBy === 'marker' ? `the replica's marker says txid ${h.lastTxid} is durable` : 'a damaged object names it';
    return `${what} ${are} missing at the end, after ${h.after ?? 'the newest object'} (${proof})${damaged}`;
  }
  return `${what} ${are} missing, between ${h.after ?? 'the generation start'} and ${h.before ?? 'the next object'}${damaged}`;
}

export function describeMissingBase(m: MissingBase): string {
  const from = m.firstTxid - 1;
  const later = m.nextSnapshotTxid !== undefined ? ` (the oldest snapshot left is at txid ${m.nextSnapshotTxid})` : ' (it has no snapshot at all)';
  const damaged = m.damaged.length > 0 ? `; damaged snapshots: ${listDamaged(m.damaged)}` : '';
  const segs = `${m.segments} segment${m.segments === 1 ? '' : 's'}`;
  return `generation ${m.generation} has no base snapshot: ${txids(m.firstTxid, m.lastTxid)} (${segs}) need a snapshot at or before txid ${from}${later}${damaged}`;
}

/** The orphaned segments of a generation in one sentence, naming up to `maxKeys` of them. */
export function describeOrphans(g: GenerationEntry, maxKeys = 5): string | undefined {
  if (g.orphans.length === 0) return undefined;
  const first = Math.min(...g.orphans.map((s) => s.firstTxid));
  const last = Math.max(...g.orphans.map((s) => s.lastTxid));
  const n = g.orphans.length;
  const shown = g.orphans.slice(0, maxKeys).map((s) => s.key);
  const more = n > shown.length && shown.length > 0 ? ` and ${n - shown.length} more` : '';
  const keys = shown.length > 0 ? `: ${shown.join(', ')}${more}` : '';
  return `${n} segment${n === 1 ? '' : 's'} of generation ${g.id} (${txids(first, last)}) cannot be restored, no snapshot reaches ${n === 1 ? 'it' : 'them'}${keys}`;
}

/** One orphaned segment, for reports that name each (verify). */
export function describeOrphan(s: SegmentEntry): string {
  return `segment ${s.key} (${txids(s.firstTxid, s.lastTxid)}) cannot be restored: no snapshot reaches it`;
}

export function describeLost(lost: MissingGeneration | GenerationEntry): string {
  if ('id' in lost) {
    return `the replica's marker names generation ${lost.id} (txid ${lost.newestTxid}), which holds only damaged objects: ${listDamaged(lost.damaged)}`;
  }
  return `the replica's marker says generation ${lost.generation} holds txids up to ${lost.txid} (committed ${iso(lost.commitTime)}), but the replica holds no object of it`;
}

export function describeWindowOf(g: GenerationEntry, w: Window): string {
  return `generation ${g.id} ${txids(w.firstTxid, w.lastTxid)} (${iso(w.firstTime)} .. ${iso(w.lastTime)})`;
}

/** Every restorable range in the replica, for "what can be restored instead". */
export function describeRestorable(c: Catalog): string {
  const parts: string[] = [];
  for (const g of c.generations) for (const w of g.windows) parts.push(describeWindowOf(g, w));
  return parts.length === 0 ? 'nothing' : parts.join('; ');
}

/** Orphans other than those that need the missing base (its sentence counts them already). */
export function orphansAfterHoles(g: GenerationEntry): GenerationEntry {
  const base = g.missingBase;
  return base ? { ...g, orphans: g.orphans.filter((o) => o.lastTxid > base.lastTxid) } : g;
}

/** Every problem of one generation, one sentence each: missing base, holes, orphans after holes. */
export function generationProblems(g: GenerationEntry): string[] {
  const out: string[] = [];
  if (g.missingBase) out.push(describeMissingBase(g.missingBase));
  for (const h of g.holes) out.push(describeHole(h));
  const o = describeOrphans(orphansAfterHoles(g));
  if (o) out.push(o);
  return out;
}
