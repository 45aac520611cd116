import { PitrError } from '../errors.js';
import type { Catalog, GenerationEntry, SegmentEntry, SnapshotEntry, Window } from '../catalog/catalog.js';

/** What state to restore. */
export type RestoreTarget = { kind: 'latest' } | { kind: 'txid'; txid: number } | { kind: 'time'; timeMs: number };

/**
 * Everything restore will do, decided from the object list alone: which snapshot, which segments
 * in which order, and where to stop. Executing it applies transactions with txid <= stopTxid and,
 * for a time target, commit time <= stopTime.
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
}

interface Located {
  gen: GenerationEntry;
  window: Window;
}

/** Pure: choose the objects for `target`, or throw REPLICA_EMPTY / TARGET_OUT_OF_WINDOW with the windows. */
export function planRestore(catalog: Catalog, target: RestoreTarget, replicaUrl = 'the replica'): RestorePlan {
  const all: Located[] = [];
  for (const gen of catalog.generations) for (const window of gen.windows) all.push({ gen, window });
  if (all.length === 0) {
    throw new PitrError(
      'REPLICA_EMPTY',
      catalog.generations.length === 0
        ? `replica ${replicaUrl} holds no pitr generations`
        : `replica ${replicaUrl} holds no restorable generation (no snapshot found)`,
      'check the URL; is an agent replicating to it (pitr replicate DB URL)?',
    );
  }
  let loc: Located;
  let stopTxid: number;
  let stopTime: number | undefined;
  if (target.kind === 'latest') {
    loc = all[all.length - 1] as Located;
    stopTxid = loc.window.lastTxid;
  } else if (target.kind === 'txid') {
    const found = all.find((l) => target.txid >= l.window.firstTxid && target.txid <= l.window.lastTxid);
    if (!found) throw outOfWindow(`txid ${target.txid} is not in a restorable window`, all);
    loc = found;
    stopTxid = target.txid;
  } else {
    const t = target.timeMs;
    let idx = -1;
    for (let i = 0; i < all.length; i++) if ((all[i] as Located).window.firstTime <= t) idx = i;
    if (idx < 0) throw outOfWindow(`${new Date(t).toISOString()} is before the first restorable commit`, all);
    const found = all[idx] as Located;
    if (t > found.window.lastTime && idx < all.length - 1) {
      // Between two windows nothing proves which transactions happened: never guess across a break.
      throw outOfWindow(
        `${new Date(t).toISOString()} falls between two restorable windows (pitr was not capturing continuously then)`,
        all,
      );
    }
    loc = found;
    stopTxid = loc.window.lastTxid;
    stopTime = t;
  }
  const snapshot = chooseSnapshot(loc, stopTxid, stopTime);
  const segments = chainSegments(loc.gen, snapshot.txid, stopTxid, stopTime);
  const bytes = snapshot.size + segments.reduce((n, s) => n + s.size, 0);
  return { target, generation: loc.gen.id, window: loc.window, snapshot, segments, stopTxid, stopTime, bytes };
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
 * longer range), take the one that reaches furthest: fewer downloads, and a damaged shorter copy
 * is not needed at all.
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
  return new PitrError('TARGET_OUT_OF_WINDOW', `${what}; restorable: ${windows}`, 'pick a --to time or --txid inside a window (see `pitr list`)');
}

/** Describe a window for messages. */
export function describeWindow(w: Window): string {
  return `txid ${w.firstTxid}..${w.lastTxid} (${new Date(w.firstTime).toISOString()} .. ${new Date(w.lastTime).toISOString()})`;
}
