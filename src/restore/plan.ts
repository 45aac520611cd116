import { PitrError } from '../errors.js';
import { hasIntact, latestState, type Catalog, type DamagedObject, type GenerationEntry, type SegmentEntry, type SnapshotEntry, type Window } from '../catalog/catalog.js';
import { describeDamaged, describeHole, describeLost, describeMissingBase, describeOrphans, describeRestorable, orphansAfterHoles, txids } from '../catalog/describe.js';
import { catchUpsOf, downtimeAt, type CatchUp } from '../catalog/catch-ups.js';

/** What state to restore. */
export type RestoreTarget = { kind: 'latest' } | { kind: 'txid'; txid: number } | { kind: 'time'; timeMs: number };

/**
 * Everything restore will do, decided from the object list, the replica's marker and the damaged
 * objects alone (all in the catalog): which snapshot, which segments in which order, and where to
 * stop. Executing it applies transactions with txid <= stopTxid and, for a time target, commit
 * time <= stopTime.
 */
export interface RestorePlan {
  target: RestoreTarget;
  generation: string;
  window: Window;
  snapshot: SnapshotEntry;
  segments: SegmentEntry[];
  stopTxid: number;
  stopTime: number | undefined;
  bytes: number;
  /** Damaged objects in the replica, none of which the plan uses, with why. */
  skipped: DamagedObject[];
  /** Newer generations that hold only damaged objects, passed over for the latest state. */
  skippedGenerations: string[];
  /**
   * A time target inside the downtime a catch-up step covers (after the commit of txid - 1, before
   * the step): the plan ends at the state before the step, and the caller should say so.
   */
  insideDowntime?: CatchUp;
  /** A --txid target that is a catch-up step: the file as the agent found it after a downtime. */
  catchUpTarget?: CatchUp;
}

interface Located {
  gen: GenerationEntry;
  window: Window;
}

const INCOMPLETE_HINT =
  'restore a point inside a restorable range instead (--txid N or --to TIME, see `pitr list`), or restore from another replica that holds these transactions';
const CORRUPT_HINT = 'the object is damaged; restore a point before it (see `pitr list`), or restore from another replica that holds these transactions';

/**
 * Pure: choose the objects for `target`, or throw: REPLICA_EMPTY, TARGET_OUT_OF_WINDOW (the target
 * is outside what the replica ever held), REPLICA_INCOMPLETE (the replica should hold it but
 * objects are missing) or OBJECT_CORRUPT (only damaged objects hold it). Every refusal names what
 * is missing and what can be restored instead. Damaged objects are planned around.
 */
export function planRestore(catalog: Catalog, target: RestoreTarget, replicaUrl = 'the replica'): RestorePlan {
  const usable = catalog.generations.filter(hasIntact);
  const latest = latestState(catalog);
  if (usable.length === 0) {
    if (latest.lost) throw lostError(catalog, latest.lost);
    if (catalog.damaged.length > 0) {
      throw new PitrError('OBJECT_CORRUPT', `replica ${replicaUrl} holds no intact pitr object; damaged: ${catalog.damaged.map(describeDamaged).join(', ')}`, CORRUPT_HINT);
    }
    throw new PitrError('REPLICA_EMPTY', `replica ${replicaUrl} holds no pitr generations`, 'check the URL; is an agent replicating to it (pitr replicate DB URL)?');
  }
  const all: Located[] = [];
  for (const gen of usable) for (const window of gen.windows) all.push({ gen, window });

  let loc: Located;
  let stopTxid: number;
  let stopTime: number | undefined;
  if (target.kind === 'latest') {
    if (latest.lost) throw lostError(catalog, latest.lost);
    const g = latest.generation as GenerationEntry;
    if (!latest.restorable) throw blocked(catalog, g, `the latest state (txid ${g.newestTxid} of generation ${g.id})`, lastWindowBefore(g, g.newestTxid), g.newestTxid);
    loc = { gen: g, window: g.windows[g.windows.length - 1] as Window };
    stopTxid = loc.window.lastTxid;
  } else if (target.kind === 'txid') {
    const found = all.find((l) => target.txid >= l.window.firstTxid && target.txid <= l.window.lastTxid);
    if (!found) {
      const g = usable.find((x) => target.txid >= spanStart(x) && target.txid <= x.newestTxid);
      if (g) throw blocked(catalog, g, `txid ${target.txid}`, lastWindowBefore(g, target.txid), target.txid);
      const holders = catalog.damaged.filter((d) => target.txid >= d.firstTxid && target.txid <= d.lastTxid);
      if (holders.length > 0) {
        throw new PitrError('OBJECT_CORRUPT', `cannot restore txid ${target.txid}: it is only in damaged objects: ${holders.map(describeDamaged).join(', ')}; restorable: ${describeRestorable(catalog)}`, CORRUPT_HINT);
      }
      throw outOfWindow(`txid ${target.txid} is not in a restorable window`, all);
    }
    loc = found;
    stopTxid = target.txid;
  } else {
    const t = target.timeMs;
    const when = new Date(t).toISOString();
    let gi = -1;
    for (let i = 0; i < usable.length; i++) if (earliestTime(usable[i] as GenerationEntry) <= t) gi = i;
    if (gi < 0) throw outOfWindow(`${when} is before the first restorable commit`, all);
    const g = usable[gi] as GenerationEntry;
    let w: Window | undefined;
    for (const x of g.windows) if (x.firstTime <= t) w = x;
    if (!w) throw blocked(catalog, g, when, undefined, g.windows[0]?.firstTxid ?? g.newestTxid);
    if (t >= w.lastTime) {
      if (w.lastTxid < g.newestTxid) {
        // Transactions after the window exist; when they committed is unknown, so which state was
        // current at `t` is unknown: never guess.
        throw blocked(catalog, g, when, w, w.lastTxid + 1);
      }
      if (t > w.lastTime && gi < usable.length - 1) {
        // Between two generations nothing proves which transactions happened: never guess across a break.
        throw outOfWindow(`${when} falls between two restorable windows (pitr was not capturing continuously then)`, all);
      }
      if (t > w.lastTime && latest.lost) throw lostError(catalog, latest.lost);
    }
    loc = { gen: g, window: w };
    stopTxid = w.lastTxid;
    stopTime = t;
  }
  const snapshot = chooseSnapshot(loc, stopTxid, stopTime);
  const segments = chainSegments(loc.gen, snapshot.txid, stopTxid, stopTime);
  const bytes = snapshot.size + segments.reduce((n, s) => n + s.size, 0);
  const insideDowntime = stopTime === undefined ? undefined : downtimeAt(loc.gen, stopTime, snapshot.txid, stopTxid);
  const catchUpTarget = target.kind === 'txid' ? catchUpsOf(loc.gen).find((c) => c.txid === target.txid) : undefined;
  return {
    target,
    generation: loc.gen.id,
    window: loc.window,
    snapshot,
    segments,
    stopTxid,
    stopTime,
    bytes,
    skipped: catalog.damaged,
    skippedGenerations: latest.skippedGenerations.map((g) => g.id),
    ...(insideDowntime && { insideDowntime }),
    ...(catchUpTarget && { catchUpTarget }),
  };
}

/** The oldest txid of a generation's history: where it can be restored from, or where its damage starts. */
function spanStart(g: GenerationEntry): number {
  let s = g.windows[0]?.firstTxid ?? Infinity;
  if (g.missingBase) s = Math.min(s, g.missingBase.firstTxid);
  for (const o of g.orphans) s = Math.min(s, o.firstTxid);
  return s;
}

function earliestTime(g: GenerationEntry): number {
  let t = g.windows[0]?.firstTime ?? Infinity;
  for (const o of g.orphans) t = Math.min(t, o.firstTime);
  return t;
}

function lastWindowBefore(g: GenerationEntry, txid: number): Window | undefined {
  let w: Window | undefined;
  for (const x of g.windows) if (x.firstTxid <= txid) w = x;
  return w;
}

/**
 * `what` (in generation g, up to txid `upTo`) cannot be restored from `from` (the last window at
 * or before it, if any): name what is missing in between, and what can be restored instead.
 */
function blocked(catalog: Catalog, g: GenerationEntry, what: string, from: Window | undefined, upTo: number): PitrError {
  const start = from ? from.lastTxid + 1 : -Infinity;
  const problems: string[] = [];
  let damageOnly = true;
  if (!from && g.missingBase) {
    problems.push(describeMissingBase(g.missingBase));
    damageOnly &&= g.missingBase.damaged.length > 0;
  } else if (!from && g.windows.length === 0) {
    problems.push(`generation ${g.id} has no snapshot to restore from`);
    damageOnly = false;
  }
  const holes = g.holes.filter((h) => h.lastTxid >= start && h.firstTxid <= upTo);
  for (const h of holes) {
    problems.push(describeHole(h));
    damageOnly &&= h.onlyDamaged;
  }
  if (problems.length === 0) {
    problems.push(`${txids(Math.max(start, 1), upTo)} of generation ${g.id} are not restorable`);
    damageOnly = false;
  }
  const orphans = describeOrphans(orphansAfterHoles(g), 0);
  const text = `cannot restore ${what}: ${problems.join('; ')}${orphans ? `; ${orphans}` : ''}; restorable: ${describeRestorable(catalog)}`;
  return damageOnly ? new PitrError('OBJECT_CORRUPT', text, CORRUPT_HINT) : new PitrError('REPLICA_INCOMPLETE', text, INCOMPLETE_HINT);
}

function lostError(catalog: Catalog, lost: Parameters<typeof describeLost>[0]): PitrError {
  const text = `cannot restore the latest state: ${describeLost(lost)}; restorable: ${describeRestorable(catalog)}`;
  return 'id' in lost ? new PitrError('OBJECT_CORRUPT', text, CORRUPT_HINT) : new PitrError('REPLICA_INCOMPLETE', text, INCOMPLETE_HINT);
}

/** Newest snapshot inside the window at or before the stop point: the least to replay. */
function chooseSnapshot(loc: Located, stopTxid: number, stopTime: number | undefined): SnapshotEntry {
  let best: SnapshotEntry | undefined;
  for (const s of loc.gen.snapshots) {
    if (s.txid < loc.window.firstTxid || s.txid > stopTxid) continue;
    if (stopTime !== undefined && s.commitTime > stopTime) continue;
    if (!best || s.txid > best.txid) best = s;
  }
  if (!best) {
    // The window opens with a snapshot by construction, so this is a bug, not a user error.
    throw new PitrError('CHAIN_BROKEN', `no snapshot found for window starting at txid ${loc.window.firstTxid}`, 'report this as a bug, with `pitr list` output');
  }
  return best;
}

/**
 * Segments from fromTxid+1 up to the stop point. Where objects overlap (an upload retried with a
 * longer range), take the one that reaches furthest: fewer downloads. Should it turn out damaged
 * when read, restore replans without it (see replan.ts).
 */
function chainSegments(gen: GenerationEntry, fromTxid: number, stopTxid: number, stopTime: number | undefined): SegmentEntry[] {
  const out: SegmentEntry[] = [];
  let end = fromTxid;
  while (end < stopTxid) {
    let best: SegmentEntry | undefined;
    for (const seg of gen.segments) {
      if (seg.firstTxid > end + 1 || seg.lastTxid <= end) continue;
      if (!best || seg.lastTxid > best.lastTxid) best = seg;
    }
    if (!best) break;
    // Its first new transaction is after the target time: nothing more to apply.
    if (stopTime !== undefined && best.firstTxid > end && best.firstTime > stopTime) break;
    out.push(best);
    end = best.lastTxid;
  }
  return out;
}

function outOfWindow(what: string, all: Located[]): PitrError {
  const windows = all
    .map(
      (l) =>
        `generation ${l.gen.id}: txid ${l.window.firstTxid}..${l.window.lastTxid}, ` +
        `${new Date(l.window.firstTime).toISOString()} .. ${new Date(l.window.lastTime).toISOString()}`,
    )
    .join('; ');
  return new PitrError('TARGET_OUT_OF_WINDOW', `${what}; restorable: ${windows || 'nothing'}`, 'pick a --to time or --txid inside a window (see `pitr list`)');
}

/** Describe a window for messages. */
export function describeWindow(w: Window): string {
  return `txid ${w.firstTxid}..${w.lastTxid} (${new Date(w.firstTime).toISOString()} .. ${new Date(w.lastTime).toISOString()})`;
}
