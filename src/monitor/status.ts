import { PitrError } from '../errors.js';
import { buildCatalog, latestState, type DamagedObject, type GenerationEntry, type Hole, type MissingBase, type SegmentEntry, type SnapshotEntry, type Window } from '../catalog/catalog.js';
import { describeDamaged, describeLost, generationProblems } from '../catalog/describe.js';
import { catchUpsOf, totalDowntimeMs, type CatchUp } from '../catalog/catch-ups.js';
import { GENERATIONS_PREFIX } from '../segment/object-names.js';
import type { ObjectInfo, StorageClient } from '../storage/storage-client.js';
import { readReplicaMarker, type Heartbeat } from './heartbeat.js';

/**
 * How current, how complete and how big a replica is, judged from the replica alone (one GET of
 * the heartbeat, then one LIST), so it works from any machine and when the agent is dead.
 */
export interface ReplicaStatus {
  replica: string;
  /** The instant ages are measured against (ms). */
  now: number;
  /** True when nothing in the replica can be restored (no generation with a snapshot). */
  empty: boolean;
  /**
   * The newest state the replica is known to have reached: the newest txid of its latest
   * generation (what `pitr restore` with no target means), from object names and the marker.
   * Null when no generation holds an intact object.
   */
  latest: { generation: string; txid: number; commitTime: number } | null;
  /** True when `latest` can be restored. When false, `problems` says why. */
  restorable: boolean;
  /** True when the marker (heartbeat) names latest's txid or a later one: its newest objects are proven there. */
  proven: boolean;
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
  /**
   * Catch-up steps (what changed while the agent was down, each one txid) in the whole replica,
   * the downtime they cover (ms; steps whose start the listing cannot tell count 0), the newest
   * (by generation, then txid), and per generation that holds any, oldest first.
   */
  catchUps: number;
  catchUpDowntimeMs: number;
  newestCatchUp: CatchUp | null;
  catchUpsByGeneration: { generation: string; catchUps: number; downtimeMs: number }[];
  objects: number;
  bytes: number;
  /** Bytes of objects last modified more than 24 h before `now`. */
  bytesDayAgo: number;
  /** bytes - bytesDayAgo: what was written in the last 24 h; deletions are not counted. */
  bytesChange24h: number;
  /** Things worth telling the operator that are not failures (unreadable heartbeat, ...). */
  notes: string[];
  /**
   * What the replica lacks, one sentence each: missing base snapshots, holes, orphaned segments,
   * damaged objects, a generation the marker names that is gone. Empty for a healthy replica.
   */
  problems: string[];
  holes: Hole[];
  missingBases: MissingBase[];
  orphans: SegmentEntry[];
  damaged: DamagedObject[];
}

export const DAY_MS = 86_400_000;

/**
 * Pure: the status of a replica from its listing (keys under generations/), its heartbeat (null
 * when absent) and the current time. Ages are clamped at 0 so a skewed clock never reports a
 * replica as newer than now.
 */
export function computeStatus(replica: string, objects: readonly ObjectInfo[], heartbeat: Heartbeat | null, now: number): ReplicaStatus {
  const catalog = buildCatalog(objects, { marker: heartbeat });
  const notes: string[] = [];

  const state = latestState(catalog);
  const latestGen: GenerationEntry | undefined = state.lost ? undefined : state.generation;
  const lostId = state.lost ? ('id' in state.lost ? state.lost.id : state.lost.generation) : undefined;
  // Null when no generation holds an intact object (a marker naming a lost one is a problem, below).
  const latest = state.generation === undefined ? null : { generation: lostId ?? state.generation.id, txid: state.txid, commitTime: state.commitTime };
  const restorable = latest !== null && state.restorable;
  const proven = latest !== null && heartbeat !== null && heartbeat.generation === latest.generation && heartbeat.txid >= latest.txid;

  const problems: string[] = [];
  if (state.lost) problems.push(describeLost(state.lost));
  for (const g of catalog.generations) problems.push(...generationProblems(g));
  for (const d of catalog.damaged) problems.push(`damaged object ${describeDamaged(d)}`);
  if (latest !== null && !restorable && !state.lost) {
    problems.unshift(`the newest state, txid ${latest.txid} of generation ${latest.generation}, is not restorable`);
  }

  let confirmedAt: number | null = null;
  let confirmedBy: ReplicaStatus['confirmedBy'] = null;
  if (latest) {
    // The agent writes the heartbeat only while this replica holds everything captured, so a
    // heartbeat naming the newest txid (or a later one) proves the replica was current then.
    if (heartbeat && heartbeat.txid >= latest.txid) {
      confirmedAt = Math.max(heartbeat.time, latest.commitTime);
      confirmedBy = 'heartbeat';
      const end = latestGen?.windows[latestGen.windows.length - 1]?.lastTxid;
      if (heartbeat.generation === latest.generation && end !== undefined && heartbeat.txid > end) {
        notes.push(`the heartbeat names txid ${heartbeat.txid}, but the newest restorable txid in the replica is ${end}`);
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
  const catchUpsByGeneration: ReplicaStatus['catchUpsByGeneration'] = [];
  let newestCatchUp: CatchUp | null = null;
  let catchUps = 0;
  let catchUpDowntimeMs = 0;
  for (const g of catalog.generations) {
    const steps = catchUpsOf(g);
    if (steps.length === 0) continue;
    const downtimeMs = totalDowntimeMs(steps);
    catchUpsByGeneration.push({ generation: g.id, catchUps: steps.length, downtimeMs });
    catchUps += steps.length;
    catchUpDowntimeMs += downtimeMs;
    newestCatchUp = steps[steps.length - 1] as CatchUp;
  }

  let bytes = 0;
  let bytesDayAgo = 0;
  for (const o of objects) {
    bytes += o.size;
    if (o.lastModified.getTime() <= now - DAY_MS) bytesDayAgo += o.size;
  }
  if (catalog.foreign.length > 0) notes.push(`${catalog.foreign.length} object(s) under ${GENERATIONS_PREFIX} are not pitr objects (ignored)`);
  const empty = !catalog.generations.some((g) => g.windows.length > 0);
  if (empty && catalog.generations.length > 0) notes.push('the replica holds segments but no snapshot: nothing is restorable');

  return {
    replica,
    now,
    empty,
    latest,
    restorable,
    proven,
    heartbeat,
    confirmedAt,
    confirmedBy,
    ageMs: confirmedAt === null ? null : Math.max(0, now - confirmedAt),
    windows: latestGen ? latestGen.windows.map((w) => ({ ...w })) : [],
    generations: catalog.generations.length,
    snapshots,
    newestSnapshot: newest ? { key: newest.key, txid: newest.txid, commitTime: newest.commitTime, ageMs: Math.max(0, now - newest.commitTime) } : null,
    segments,
    catchUps,
    catchUpDowntimeMs,
    newestCatchUp,
    catchUpsByGeneration,
    objects: objects.length,
    bytes,
    bytesDayAgo,
    bytesChange24h: bytes - bytesDayAgo,
    notes,
    problems,
    holes: catalog.generations.flatMap((g) => g.holes),
    missingBases: catalog.generations.flatMap((g) => (g.missingBase ? [g.missingBase] : [])),
    orphans: catalog.generations.flatMap((g) => g.orphans),
    damaged: catalog.damaged,
  };
}

/**
 * LIST the replica and GET its heartbeat, then computeStatus. REPLICA_NOT_FOUND when the root does
 * not exist; an unreadable heartbeat is a note (age then comes from the newest commit), not an
 * error, so monitoring still answers.
 */
export async function replicaStatus(storage: StorageClient, opts: { now?: number; signal?: AbortSignal } = {}): Promise<ReplicaStatus> {
  const req = opts.signal ? { signal: opts.signal } : {};
  // The heartbeat first, then the LIST: it names only objects already durable, so everything it
  // names was there before the LIST began (read after, it could name an upload the LIST missed).
  const read = await readReplicaMarker(storage, opts.signal);
  const hb = { heartbeat: read.marker, note: read.note === undefined ? undefined : `${read.note}; age is from the newest commit` };
  const objects = await storage.list(GENERATIONS_PREFIX, req);
  // Only an empty answer needs the extra request that tells "wrong URL" from "nothing yet".
  if (objects.length === 0 && hb.heartbeat === null && !(await storage.exists(req))) {
    throw new PitrError('REPLICA_NOT_FOUND', `replica ${storage.url} does not exist`, 'check the URL; a file replica is a directory created by `pitr replicate`');
  }
  const status = computeStatus(storage.url, objects, hb.heartbeat, opts.now ?? Date.now());
  if (hb.note) status.notes.push(hb.note);
  return status;
}
