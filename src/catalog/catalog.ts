import type { ObjectInfo } from '../storage/storage-client.js';
import { parseObjectKey } from '../segment/object-names.js';

/**
 * What a replica holds, derived from one LIST: generations, their snapshots and segments, and the
 * restorable window of each. Pure: no I/O, so plans and listings are testable and repeatable.
 */
export interface SnapshotEntry {
  key: string;
  size: number;
  generation: string;
  txid: number;
  commitTime: number;
}

export interface SegmentEntry {
  key: string;
  size: number;
  generation: string;
  firstTxid: number;
  lastTxid: number;
  firstTime: number;
  lastTime: number;
}

/** An unbroken txid range [firstTxid, lastTxid] that can be restored, starting at a snapshot. */
export interface Window {
  firstTxid: number;
  lastTxid: number;
  firstTime: number;
  lastTime: number;
}

export interface GenerationEntry {
  id: string;
  snapshots: SnapshotEntry[];
  segments: SegmentEntry[];
  bytes: number;
  /** Restorable ranges, oldest first; more than one only when objects are missing in between. */
  windows: Window[];
}

export interface Catalog {
  generations: GenerationEntry[];
  /** Keys that are not pitr objects (ignored, reported by tools). */
  foreign: string[];
}

export function buildCatalog(objects: readonly ObjectInfo[]): Catalog {
  const byGen = new Map<string, GenerationEntry>();
  const foreign: string[] = [];
  const gen = (id: string): GenerationEntry => {
    let g = byGen.get(id);
    if (!g) {
      g = { id, snapshots: [], segments: [], bytes: 0, windows: [] };
      byGen.set(id, g);
    }
    return g;
  };
  for (const o of objects) {
    const name = parseObjectKey(o.key);
    if (!name) {
      foreign.push(o.key);
      continue;
    }
    const g = gen(name.generation);
    g.bytes += o.size;
    if (name.kind === 'snapshot') {
      g.snapshots.push({ key: o.key, size: o.size, generation: name.generation, txid: name.txid, commitTime: name.commitTime });
    } else {
      g.segments.push({
        key: o.key,
        size: o.size,
        generation: name.generation,
        firstTxid: name.firstTxid,
        lastTxid: name.lastTxid,
        firstTime: name.firstTime,
        lastTime: name.lastTime,
      });
    }
  }
  const generations = [...byGen.values()].sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  for (const g of generations) {
    g.snapshots.sort((a, b) => a.txid - b.txid);
    g.segments.sort((a, b) => a.firstTxid - b.firstTxid || a.lastTxid - b.lastTxid);
    g.windows = computeWindows(g);
  }
  return { generations, foreign };
}

/**
 * Walk snapshots and segments in txid order. A window opens at a snapshot and extends through
 * every segment that starts at or before the next needed txid; a hole closes it until a later
 * snapshot opens another. Segments that overlap what is already covered are fine (their older
 * transactions are skipped at restore).
 */
function computeWindows(g: GenerationEntry): Window[] {
  const windows: Window[] = [];
  let cur: Window | null = null;
  let si = 0;
  for (const seg of g.segments) {
    // Open or extend with snapshots that come before this segment's end.
    while (si < g.snapshots.length && (g.snapshots[si] as SnapshotEntry).txid < seg.firstTxid) {
      cur = extendWithSnapshot(windows, cur, g.snapshots[si] as SnapshotEntry);
      si++;
    }
    if (cur && seg.firstTxid <= cur.lastTxid + 1 && seg.lastTxid > cur.lastTxid) {
      cur.lastTxid = seg.lastTxid;
      cur.lastTime = seg.lastTime;
    } else if (cur && seg.firstTxid > cur.lastTxid + 1) {
      cur = null; // hole: wait for a snapshot
    }
    if (!cur) {
      // A snapshot exactly at firstTxid-1 or inside the segment can still open a window here.
      while (si < g.snapshots.length && (g.snapshots[si] as SnapshotEntry).txid <= seg.lastTxid) {
        cur = extendWithSnapshot(windows, cur, g.snapshots[si] as SnapshotEntry);
        si++;
      }
      if (cur && seg.firstTxid <= cur.lastTxid + 1 && seg.lastTxid > cur.lastTxid) {
        cur.lastTxid = seg.lastTxid;
        cur.lastTime = seg.lastTime;
      }
    }
  }
  while (si < g.snapshots.length) {
    cur = extendWithSnapshot(windows, cur, g.snapshots[si] as SnapshotEntry);
    si++;
  }
  return windows;
}

function extendWithSnapshot(windows: Window[], cur: Window | null, s: SnapshotEntry): Window {
  if (cur && s.txid <= cur.lastTxid + 1) {
    if (s.txid > cur.lastTxid) {
      cur.lastTxid = s.txid;
      cur.lastTime = s.commitTime;
    }
    return cur;
  }
  const w: Window = { firstTxid: s.txid, lastTxid: s.txid, firstTime: s.commitTime, lastTime: s.commitTime };
  windows.push(w);
  return w;
}

/** The window of `g` containing txid, if any. */
export function windowOf(g: GenerationEntry, txid: number): Window | undefined {
  return g.windows.find((w) => txid >= w.firstTxid && txid <= w.lastTxid);
}

/** Highest txid named by any object in the catalog (0 when empty). */
export function maxTxid(c: Catalog): number {
  let max = 0;
  for (const g of c.generations) {
    for (const s of g.snapshots) max = Math.max(max, s.txid);
    for (const s of g.segments) max = Math.max(max, s.lastTxid);
  }
  return max;
}
