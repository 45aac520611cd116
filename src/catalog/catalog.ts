import type { ObjectInfo } from '../storage/storage-client.js';
import { parseObjectKey } from '../segment/object-names.js';
import { computeWindows } from './windows.js';
import { assess } from './completeness.js';

/**
 * What a replica holds, derived from one LIST and the replica's marker (the heartbeat object):
 * generations, their snapshots and segments, the restorable window(s) of each, and what is
 * missing: holes between objects, a missing tail the marker proves, a missing base snapshot,
 * orphaned segments no snapshot reaches, damaged objects. Pure: no I/O, so plans and listings are
 * testable and repeatable. The rules are written down in docs/FORMAT.md, "Completeness".
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
  /** A catch-up step (one txid: what changed while the agent was down); absent for app transactions. */
  catchUp?: true;
}

/** An object named like a pitr object that cannot be used: too small to be one, or found bad by a read. */
export interface DamagedObject {
  key: string;
  size: number;
  kind: 'snapshot' | 'segment';
  generation: string;
  /** The txids and times its name claims (a snapshot: its txid twice). */
  firstTxid: number;
  lastTxid: number;
  firstTime: number;
  lastTime: number;
  /** Why it is not used, e.g. "empty (0 bytes)" or the checksum failure. */
  reason: string;
}

/** An unbroken txid range [firstTxid, lastTxid] that can be restored, starting at a snapshot. */
export interface Window {
  firstTxid: number;
  lastTxid: number;
  firstTime: number;
  lastTime: number;
}

/** What the replica's marker says was durable: a generation and its newest txid. */
export interface MarkerClaim {
  generation: string;
  txid: number;
  commitTime: number;
}

/** The marker as the catalog needs it (the heartbeat object, src/monitor/heartbeat.ts). */
export interface ReplicaMarker extends MarkerClaim {
  /** Where earlier generations ended, as the agent knew when it wrote the marker. */
  ends?: readonly MarkerClaim[];
}

/** Transactions of a generation that no intact object holds, though something proves they exist. */
export interface Hole {
  generation: string;
  /** The missing txids, inclusive. */
  firstTxid: number;
  lastTxid: number;
  /** 'gap': objects exist on both sides; 'tail': after the newest intact object. */
  kind: 'gap' | 'tail';
  /** Key of the intact object that holds firstTxid - 1, if one does. */
  after?: string;
  /** Key of the intact object that holds lastTxid + 1 (a gap). */
  before?: string;
  /** What proves a tail: the replica's marker, or the name of a damaged object. */
  provenBy?: 'marker' | 'damaged';
  /** Damaged objects whose names claim txids of the hole. */
  damaged: DamagedObject[];
  /** True when damaged objects claim every txid of the hole: it is damage, not a deletion. */
  onlyDamaged: boolean;
}

/** Segments that need a snapshot at or before firstTxid - 1, and there is none (intact). */
export interface MissingBase {
  generation: string;
  /** The txids of the segments that need it, and how many they are. */
  firstTxid: number;
  lastTxid: number;
  segments: number;
  /** The oldest intact snapshot after them, if any. */
  nextSnapshotTxid?: number;
  /** Damaged snapshots that could have been the base. */
  damaged: DamagedObject[];
}

export interface GenerationEntry {
  id: string;
  /** Intact snapshots and segments, in txid order. Damaged ones are in `damaged`. */
  snapshots: SnapshotEntry[];
  segments: SegmentEntry[];
  damaged: DamagedObject[];
  /** Stored bytes of every object of the generation, damaged ones included. */
  bytes: number;
  /** Restorable ranges, oldest first; more than one only when objects are missing in between. */
  windows: Window[];
  /**
   * The newest txid this generation is known to have: the highest any object's name claims
   * (damaged ones too), or the marker's, whichever is higher; and its commit time.
   */
  newestTxid: number;
  newestTime: number;
  /** The txid the marker proves durable for this generation, if it names it. */
  provenTxid: number | undefined;
  holes: Hole[];
  missingBase: MissingBase | undefined;
  /** Intact segments no window reaches (after a hole, or before the oldest snapshot). */
  orphans: SegmentEntry[];
  /** True when newestTxid is restorable (the last window ends there). */
  complete: boolean;
}

/** A generation the marker names of which the replica holds no object at all. */
export interface MissingGeneration extends MarkerClaim {
  /** A newer generation holds objects: retention may have removed this one (not a problem). */
  superseded: boolean;
}

export interface Catalog {
  generations: GenerationEntry[];
  /** Keys that are not pitr objects (ignored, reported by tools). */
  foreign: string[];
  /** Every damaged object, in key order. */
  damaged: DamagedObject[];
  marker: ReplicaMarker | null;
  missingGenerations: MissingGeneration[];
}

export interface CatalogOptions {
  /** The replica's marker (null or absent: none). It must have been read BEFORE the LIST. */
  marker?: ReplicaMarker | null;
  /** Objects found bad by reading them (key -> why), treated as damaged. */
  damaged?: ReadonlyMap<string, string>;
  /**
   * Treat empty objects as damaged (default true). The spool turns it off: its entries are pitr's
   * own files, and a bad one must fail loudly when read.
   */
  screenSizes?: boolean;
}


export function buildCatalog(objects: readonly ObjectInfo[], opts: CatalogOptions = {}): Catalog {
  const byGen = new Map<string, GenerationEntry>();
  const foreign: string[] = [];
  const allDamaged: DamagedObject[] = [];
  const screen = opts.screenSizes ?? true;
  const gen = (id: string): GenerationEntry => {
    let g = byGen.get(id);
    if (!g) {
      g = {
        id,
        snapshots: [],
        segments: [],
        damaged: [],
        bytes: 0,
        windows: [],
        newestTxid: 0,
        newestTime: 0,
        provenTxid: undefined,
        holes: [],
        missingBase: undefined,
        orphans: [],
        complete: false,
      };
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
    const why = opts.damaged?.get(o.key) ?? (screen ? sizeProblem(o.size) : undefined);
    if (why !== undefined) {
      const d: DamagedObject =
        name.kind === 'snapshot'
          ? { key: o.key, size: o.size, kind: 'snapshot', generation: name.generation, firstTxid: name.txid, lastTxid: name.txid, firstTime: name.commitTime, lastTime: name.commitTime, reason: why }
          : { key: o.key, size: o.size, kind: 'segment', generation: name.generation, firstTxid: name.firstTxid, lastTxid: name.lastTxid, firstTime: name.firstTime, lastTime: name.lastTime, reason: why };
      g.damaged.push(d);
      allDamaged.push(d);
    } else if (name.kind === 'snapshot') {
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
        ...(name.catchUp && { catchUp: true as const }),
      });
    }
  }
  const marker = opts.marker ?? null;
  const claims = new Map<string, MarkerClaim>();
  if (marker) {
    for (const e of marker.ends ?? []) claims.set(e.generation, e);
    claims.set(marker.generation, { generation: marker.generation, txid: marker.txid, commitTime: marker.commitTime });
  }
  const generations = [...byGen.values()].sort((a, b) => compareIds(a.id, b.id));
  for (const g of generations) {
    g.snapshots.sort((a, b) => a.txid - b.txid);
    g.segments.sort((a, b) => a.firstTxid - b.firstTxid || a.lastTxid - b.lastTxid);
    g.damaged.sort((a, b) => compareIds(a.key, b.key));
    g.windows = computeWindows(g);
    assess(g, claims.get(g.id));
  }
  const missingGenerations: MissingGeneration[] = [];
  for (const c of claims.values()) {
    if (byGen.has(c.generation)) continue;
    const superseded = generations.some((g) => compareIds(g.id, c.generation) > 0 && g.snapshots.length + g.segments.length > 0);
    missingGenerations.push({ ...c, superseded });
  }
  missingGenerations.sort((a, b) => compareIds(a.generation, b.generation));
  allDamaged.sort((a, b) => compareIds(a.key, b.key));
  return { generations, foreign, damaged: allDamaged, marker, missingGenerations };
}

/**
 * An empty object is never a pitr object (it is what an interrupted copy or a full disk leaves),
 * and the listing says so for free. Any other damage is found when the object is read.
 */
function sizeProblem(size: number): string | undefined {
  return size === 0 ? 'empty (0 bytes)' : undefined;
}

function compareIds(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/** True when the generation holds at least one intact object. */
export function hasIntact(g: GenerationEntry): boolean {
  return g.snapshots.length + g.segments.length > 0;
}

/** The window of `g` containing txid, if any. */
export function windowOf(g: GenerationEntry, txid: number): Window | undefined {
  return g.windows.find((w) => txid >= w.firstTxid && txid <= w.lastTxid);
}

/** Highest txid the replica is known to have reached: object names (damaged too) and the marker (0 when empty). */
export function maxTxid(c: Catalog): number {
  let max = 0;
  for (const g of c.generations) max = Math.max(max, g.newestTxid);
  for (const m of c.missingGenerations) max = Math.max(max, m.txid);
  return max;
}

/** What "the latest state" of a replica is, and whether it can be restored. */
export interface LatestState {
  /** The generation "latest" means: the newest that holds an intact object (undefined: none does). */
  generation: GenerationEntry | undefined;
  /** Its newest known txid and commit time (0 when there is no generation). */
  txid: number;
  commitTime: number;
  /** True when that txid can be restored. */
  restorable: boolean;
  /** The marker names a generation newer than `generation` of which no intact object is left. */
  lost: MissingGeneration | GenerationEntry | undefined;
  /** Newer generations that hold only damaged objects and that the marker does not name: skipped. */
  skippedGenerations: GenerationEntry[];
}

/**
 * The latest state: the newest txid of the newest generation that holds an intact object. A newer
 * generation that holds only damaged objects does not count (a stray or foreign object must not
 * hide the real history), unless the marker names it or a later one: then the agent wrote it, and
 * "latest" is not restorable. pitr never answers "latest" with an older generation.
 */
export function latestState(c: Catalog): LatestState {
  const intact = c.generations.filter(hasIntact);
  const g = intact[intact.length - 1];
  const skippedGenerations = c.generations.filter((x) => !hasIntact(x) && (!g || compareIds(x.id, g.id) > 0));
  let lost: LatestState['lost'];
  const m = c.marker;
  if (m && (!g || compareIds(m.generation, g.id) > 0)) {
    lost = c.generations.find((x) => x.id === m.generation) ?? c.missingGenerations.find((x) => x.generation === m.generation);
  }
  const skipped = lost ? skippedGenerations.filter((x) => compareIds(x.id, m!.generation) > 0) : skippedGenerations;
  if (lost) {
    const txid = 'newestTxid' in lost ? lost.newestTxid : lost.txid;
    const commitTime = 'newestTime' in lost ? lost.newestTime : lost.commitTime;
    return { generation: g, txid, commitTime, restorable: false, lost, skippedGenerations: skipped };
  }
  if (!g) return { generation: undefined, txid: 0, commitTime: 0, restorable: false, lost: undefined, skippedGenerations: skipped };
  return { generation: g, txid: g.newestTxid, commitTime: g.newestTime, restorable: g.complete, lost: undefined, skippedGenerations: skipped };
}
