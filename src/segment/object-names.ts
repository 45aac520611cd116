import { randomBytes } from 'node:crypto';

/**
 * Object keys, relative to a replica root. Every number is 16 lowercase hex digits, zero-padded,
 * so that lexical order (what every store's LIST returns) is numeric order and one LIST of a
 * generation is enough to plan a restore:
 *   generations/<gen>/snapshots/<txid>-<commitTime>.snap
 *   generations/<gen>/segments/<firstTxid>-<lastTxid>-<firstTime>-<lastTime>.seg
 *   generations/<gen>/segments/<txid>-<txid>-<time>-<time>.catchup.seg   (a catch-up step)
 * A catch-up step is named as such so that a listing alone can show the downtimes it covers.
 */

export type ObjectName =
  | { kind: 'snapshot'; generation: string; txid: number; commitTime: number }
  | { kind: 'segment'; generation: string; firstTxid: number; lastTxid: number; firstTime: number; lastTime: number; catchUp: boolean };

export const GENERATIONS_PREFIX = 'generations/';
export const SNAPSHOT_SUFFIX = '.snap';
export const SEGMENT_SUFFIX = '.seg';
/** Ends the key of a catch-up step (see docs/FORMAT.md); it still ends in SEGMENT_SUFFIX. */
export const CATCH_UP_SUFFIX = '.catchup.seg';

const GEN = '([0-9a-f]{16})';
const NUM = '([0-9a-f]{16})';
const SNAPSHOT_RE = new RegExp(`^generations/${GEN}/snapshots/${NUM}-${NUM}\\.snap$`);
const SEGMENT_RE = new RegExp(`^generations/${GEN}/segments/${NUM}-${NUM}-${NUM}-${NUM}(\\.catchup)?\\.seg$`);
const GENERATION_RE = /^[0-9a-f]{16}$/;

export function isGenerationId(s: string): boolean {
  return GENERATION_RE.test(s);
}

function checkGeneration(generation: string): void {
  if (!isGenerationId(generation)) {
    throw new RangeError(`generation must be 16 lowercase hex characters, got ${JSON.stringify(generation)}`);
  }
}

function hex16(what: string, n: number): string {
  if (!Number.isSafeInteger(n) || n < 0) throw new RangeError(`${what} must be a non-negative safe integer, got ${n}`);
  return n.toString(16).padStart(16, '0');
}

function num(hex: string): number | null {
  const n = parseInt(hex, 16);
  return Number.isSafeInteger(n) ? n : null;
}

/** `generations/<gen>/` */
export function generationPrefix(generation: string): string {
  checkGeneration(generation);
  return `${GENERATIONS_PREFIX}${generation}/`;
}

/** `generations/<gen>/snapshots/`, for listing one generation's snapshots. */
export function snapshotsPrefix(generation: string): string {
  return `${generationPrefix(generation)}snapshots/`;
}

/** `generations/<gen>/segments/`, for listing one generation's segments. */
export function segmentsPrefix(generation: string): string {
  return `${generationPrefix(generation)}segments/`;
}

export function snapshotKey(generation: string, txid: number, commitTime: number): string {
  return `${snapshotsPrefix(generation)}${hex16('txid', txid)}-${hex16('commitTime', commitTime)}${SNAPSHOT_SUFFIX}`;
}

export function segmentKey(generation: string, firstTxid: number, lastTxid: number, firstTime: number, lastTime: number, catchUp = false): string {
  if (firstTxid < 1 || lastTxid < firstTxid) throw new RangeError(`segment txid range ${firstTxid}..${lastTxid} is not valid`);
  if (lastTime < firstTime) throw new RangeError(`segment time range ${firstTime}..${lastTime} is not valid`);
  if (catchUp && (firstTxid !== lastTxid || firstTime !== lastTime)) throw new RangeError(`a catch-up step is one txid at one time, not ${firstTxid}..${lastTxid}`);
  return (
    `${segmentsPrefix(generation)}${hex16('firstTxid', firstTxid)}-${hex16('lastTxid', lastTxid)}-` +
    `${hex16('firstTime', firstTime)}-${hex16('lastTime', lastTime)}${catchUp ? CATCH_UP_SUFFIX : SEGMENT_SUFFIX}`
  );
}

/** The key of an object named by `name`. */
export function objectKey(name: ObjectName): string {
  return name.kind === 'snapshot'
    ? snapshotKey(name.generation, name.txid, name.commitTime)
    : segmentKey(name.generation, name.firstTxid, name.lastTxid, name.firstTime, name.lastTime, name.catchUp);
}

/**
 * Parse a key; null for anything that is not exactly a key pitr writes (foreign files in a
 * bucket, upper-case hex, temp files, inconsistent ranges), so listings can skip them safely.
 */
export function parseObjectKey(key: string): ObjectName | null {
  let m = SNAPSHOT_RE.exec(key);
  if (m) {
    const txid = num(m[2]!);
    const commitTime = num(m[3]!);
    if (txid === null || commitTime === null) return null;
    return { kind: 'snapshot', generation: m[1]!, txid, commitTime };
  }
  m = SEGMENT_RE.exec(key);
  if (m) {
    const firstTxid = num(m[2]!);
    const lastTxid = num(m[3]!);
    const firstTime = num(m[4]!);
    const lastTime = num(m[5]!);
    if (firstTxid === null || lastTxid === null || firstTime === null || lastTime === null) return null;
    if (firstTxid < 1 || lastTxid < firstTxid || lastTime < firstTime) return null;
    const catchUp = m[6] !== undefined;
    if (catchUp && (firstTxid !== lastTxid || firstTime !== lastTime)) return null;
    return { kind: 'segment', generation: m[1]!, firstTxid, lastTxid, firstTime, lastTime, catchUp };
  }
  return null;
}

/**
 * A new generation id: 12 hex digits of the creation time in ms, then 4 random hex digits, so ids
 * sort by creation time and two agents starting in the same millisecond still differ.
 */
export function newGenerationId(nowMs: number = Date.now()): string {
  if (!Number.isSafeInteger(nowMs) || nowMs < 0 || nowMs >= 2 ** 48) {
    throw new RangeError(`generation time must be an integer ms in 0..2^48-1, got ${nowMs}`);
  }
  return nowMs.toString(16).padStart(12, '0') + randomBytes(2).toString('hex');
}

/** The creation time encoded in a generation id (ms since epoch). */
export function generationTime(generation: string): number {
  checkGeneration(generation);
  return parseInt(generation.slice(0, 12), 16);
}
