import { PitrError, isPitrError } from '../errors.js';
import { buildCatalog, type GenerationEntry, type SnapshotEntry, type Window } from '../catalog/catalog.js';
import { GENERATIONS_PREFIX } from '../segment/object-names.js';
import type { ObjectInfo, StorageClient } from '../storage/storage-client.js';
import { readHeartbeat, type Heartbeat } from './heartbeat.js';

/**
 * How current and how big a replica is, judged from the replica alone (one LIST and one GET of the
 * heartbeat), so it works from any machine and when the agent is dead.
 */
export interface ReplicaStatus {
  replica: string;
  /** The instant ages are measured against (ms). */
  now: number;
  /** True when nothing in the replica can be restored (no generation with a snapshot). */
  empty: boolean;
  /** The newest restorable point: the end of the last window of the newest restorable generation. */
  latest: { generation: string; txid: number; commitTime: number } | null;
  heartbeat: Heartbeat | null;
  /**
   * When the replica was last known to be current: the heartbeat's time when the heartbeat vouches
   * for the newest txid the replica holds (or a later one), otherwise the newest commit time.
   */
  confirmedAt: number | null;
  confirmedBy: 'heartbeat' | 'commit' | null;
  /** now - confirmedAt (never negative: a clock ahead of ours is not "fresher than now"); null when empty. */
  ageMs: number | null;
  /** Restorable windows of the latest generation, oldest first. */
  windows: Window[];
  generations: number;
  /** Snapshots in the whole replica, and the newest one (by txid) of the latest generation. */
  snapshots: number;
  newestSnapshot: { key: string; txid: number; commitTime: number; ageMs: number } | null;
  segments: number;
  objects: number;
  bytes: number;
  /** Bytes of objects last modified more than 24 h before `now`. */
  bytesDayAgo: number;
  /** bytes - bytesDayAgo: what was written in the last 24 h; deletions are not counted. */
  bytesChange24h: number;
  /** Things worth telling the operator that are not failures (unreadable heartbeat, ...). */
  notes: string[];
}

export const DAY_MS = 86_400_000;

/**
 * Pure: the status of a replica from its listing (keys under generations/), its heartbeat (null
 * when absent) and the current time. Ages are clamped at 0 so a skewed clock never reports a
 * replica as newer than now.
 */
export function computeStatus(replica: string, objects: readonly ObjectInfo[], heartbeat: Heartbeat | null, now: number): ReplicaStatus {
  const catalog = buildCatalog(objects);
  const notes: string[] = [];

  let latestGen: GenerationEntry | undefined;
  for (const g of catalog.generations) if (g.windows.length > 0) latestGen = g;
  const lastWindow = latestGen?.windows[latestGen.windows.length - 1];
  const latest = latestGen && lastWindow ? { generation: latestGen.id, txid: lastWindow.lastTxid, commitTime: lastWindow.lastTime } : null;

  let confirmedAt: number | null = null;
  let confirmedBy: ReplicaStatus['confirmedBy'] = null;
  if (latest) {
    // The agent writes the heartbeat only while this replica holds everything captured, so a
    // heartbeat naming the newest txid (or a later one) proves the replica was current then.
    if (heartbeat && heartbeat.txid >= latest.txid) {
      confirmedAt = Math.max(heartbeat.time, latest.commitTime);
      confirmedBy = 'heartbeat';
      if (heartbeat.txid > latest.txid) {
        notes.push(`the heartbeat names txid ${heartbeat.txid}, but the newest restorable txid in the replica is ${latest.txid}`);
      }
    } else {
      confirmedAt = latest.commitTime;
      confirmedBy = 'commit';
      if (heartbeat) notes.push(`the heartbeat (txid ${heartbeat.txid}) is older than the newest txid ${latest.txid}; age is from the newest commit`);
    }
  }

  let snapshots = 0;
  let segments = 0;
  for (const g of catalog.generations) {
    snapshots += g.snapshots.length;
    segments += g.segments.length;
  }
  const newest: SnapshotEntry | undefined = latestGen?.snapshots[latestGen.snapshots.length - 1];

  let bytes = 0;
  let bytesDayAgo = 0;
  for (const o of objects) {
    bytes += o.size;
    if (o.lastModified.getTime() <= now - DAY_MS) bytesDayAgo += o.size;
  }
  if (catalog.foreign.length > 0) notes.push(`${catalog.foreign.length} object(s) under ${GENERATIONS_PREFIX} are not pitr objects (ignored)`);
  if (!latest && catalog.generations.length > 0) notes.push('the replica holds segments but no snapshot: nothing is restorable yet');

  return {
    replica,
    now,
    empty: latest === null,
    latest,
    heartbeat,
    confirmedAt,
    confirmedBy,
    ageMs: confirmedAt === null ? null : Math.max(0, now - confirmedAt),
    windows: latestGen ? latestGen.windows.map((w) => ({ ...w })) : [],
    generations: catalog.generations.length,
    snapshots,
    newestSnapshot: newest ? { key: newest.key, txid: newest.txid, commitTime: newest.commitTime, ageMs: Math.max(0, now - newest.commitTime) } : null,
    segments,
    objects: objects.length,
    bytes,
    bytesDayAgo,
    bytesChange24h: bytes - bytesDayAgo,
    notes,
  };
}

/**
 * LIST the replica and GET its heartbeat, then computeStatus. REPLICA_NOT_FOUND when the root does
 * not exist; an unreadable heartbeat is a note (age then comes from the newest commit), not an
 * error, so monitoring still answers.
 */
export async function replicaStatus(storage: StorageClient, opts: { now?: number; signal?: AbortSignal } = {}): Promise<ReplicaStatus> {
  const req = opts.signal ? { signal: opts.signal } : {};
  const [objects, hb] = await Promise.all([
    storage.list(GENERATIONS_PREFIX, req),
    readHeartbeat(storage, opts.signal).then(
      (h) => ({ heartbeat: h, note: undefined }),
      (err: unknown) => {
        if (isPitrError(err, 'OBJECT_CORRUPT')) return { heartbeat: null, note: `${err.message}; age is from the newest commit` };
        throw err;
      },
    ),
  ]);
  // Only an empty answer needs the extra request that tells "wrong URL" from "nothing yet".
  if (objects.length === 0 && hb.heartbeat === null && !(await storage.exists(req))) {
    throw new PitrError('REPLICA_NOT_FOUND', `replica ${storage.url} does not exist`, 'check the URL; a file replica is a directory created by `pitr replicate`');
  }
  const status = computeStatus(storage.url, objects, hb.heartbeat, opts.now ?? Date.now());
  if (hb.note) status.notes.push(hb.note);
  return status;
}
