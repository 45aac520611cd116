import type { GenerationEntry, SnapshotEntry, Window } from './catalog.js';

/**
 * Walk snapshots and segments in txid order. A window opens at a snapshot and extends through
 * every segment that starts at or before the next needed txid; a hole closes it until a later
 * snapshot opens another. Segments that overlap what is already covered are fine (their older
 * transactions are skipped at restore).
 */
export function computeWindows(g: GenerationEntry): Window[] {
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
