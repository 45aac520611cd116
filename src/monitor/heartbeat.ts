import { PitrError, isPitrError } from '../errors.js';
import { isGenerationId } from '../segment/object-names.js';
import type { StorageClient } from '../storage/storage-client.js';

/**
 * The heartbeat, also the replica's marker: a small JSON object at the replica root that names the
 * newest txid durable in the replica (and where earlier generations ended). The agent rewrites it
 * after uploads (at most every few seconds, see the shipper) and while the replica is caught up and
 * idle. Segments only appear when the app commits, so on a quiet database the newest commit time
 * says nothing about whether replication still works; the heartbeat lets `pitr status` judge
 * freshness from the replica alone, wherever the agent runs. And since it is written only after the
 * objects it names are durable, a listing that lacks them proves objects were lost (see
 * docs/FORMAT.md, "Completeness"): readers GET it BEFORE they LIST.
 *
 * It is the one mutable object in a replica. Both backends replace a key atomically (rename;
 * S3 PUT), so a reader sees the old or the new heartbeat, never a mix.
 */
export const HEARTBEAT_KEY = 'heartbeat.json';

export interface Heartbeat {
  version: 1;
  /** When the agent wrote it (ms since epoch, the agent's clock). */
  time: number;
  generation: string;
  /** The last txid durable in this replica when it was written. */
  txid: number;
  /** Commit time of that txid (ms). */
  commitTime: number;
  agent: { host: string; pid: number; version: string };
  /**
   * Where earlier generations ended in this replica (their newest durable txid), newest first, as
   * far as the agent knows. Optional: written since the completeness checks; older readers ignore it.
   */
  ends?: HeartbeatEnd[];
}

/** A generation and its newest durable txid. */
export interface HeartbeatEnd {
  generation: string;
  txid: number;
  commitTime: number;
}

/** At most this many earlier generations are named in `ends`. */
export const MAX_HEARTBEAT_ENDS = 16;

// Generous: a hand-edited or foreign file must not make status allocate or print much.
const MAX_HEARTBEAT_BYTES = 64 * 1024;

/** JSON with a trailing newline, so `cat heartbeat.json` reads well. Throws RangeError on bad input. */
export function encodeHeartbeat(h: Heartbeat): Uint8Array {
  const problem = heartbeatProblem(h);
  if (problem !== undefined) throw new RangeError(`encodeHeartbeat: ${problem}`);
  return new TextEncoder().encode(JSON.stringify(canonical(h)) + '\n');
}

/** Parse and validate; PitrError OBJECT_CORRUPT (naming `name`) for anything that is not a heartbeat. */
export function decodeHeartbeat(bytes: Uint8Array, name: string = HEARTBEAT_KEY): Heartbeat {
  const fail = (detail: string, cause?: unknown): never => {
    throw new PitrError(
      'OBJECT_CORRUPT',
      `heartbeat ${name} is corrupt: ${detail}`,
      'the agent rewrites it about once a minute while the replica is idle; if it stays bad, delete it (status then judges age from the latest commit)',
      cause === undefined ? undefined : { cause },
    );
  };
  if (bytes.length > MAX_HEARTBEAT_BYTES) fail(`${bytes.length} bytes, more than a heartbeat can be`);
  let value: unknown;
  try {
    value = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(bytes));
  } catch (err) {
    return fail('not valid UTF-8 JSON', err);
  }
  if (typeof value === 'object' && value !== null && (value as { version?: unknown }).version !== 1 && typeof (value as { version?: unknown }).version === 'number') {
    fail(`format version ${String((value as { version: unknown }).version)} is not supported (this pitr reads version 1); upgrade pitr`);
  }
  const problem = heartbeatProblem(value);
  if (problem !== undefined) fail(problem);
  return canonical(value as Heartbeat);
}

/** Only the known fields, in a fixed order: unknown keys neither round-trip nor get written. */
function canonical(h: Heartbeat): Heartbeat {
  return {
    version: 1,
    time: h.time,
    generation: h.generation,
    txid: h.txid,
    commitTime: h.commitTime,
    agent: { host: h.agent.host, pid: h.agent.pid, version: h.agent.version },
    ...(h.ends !== undefined && h.ends.length > 0 ? { ends: h.ends.map((e) => ({ generation: e.generation, txid: e.txid, commitTime: e.commitTime })) } : {}),
  };
}

/** The heartbeat of a replica, or null when there is none. Storage errors and corruption throw. */
export async function readHeartbeat(storage: StorageClient, signal?: AbortSignal): Promise<Heartbeat | null> {
  let bytes: Uint8Array;
  try {
    bytes = await storage.get(HEARTBEAT_KEY, signal ? { signal } : {});
  } catch (err) {
    if (isPitrError(err, 'OBJECT_NOT_FOUND')) return null;
    throw err;
  }
  return decodeHeartbeat(bytes, HEARTBEAT_KEY);
}

/**
 * The replica's marker (its heartbeat) for readers that judge completeness: null when there is
 * none; an unreadable one is null with a note saying why. A failing GET of a replica that does not
 * exist (an S3 bucket that is not there answers differently from a missing key) is
 * REPLICA_NOT_FOUND, as the LIST of a missing directory is.
 */
export async function readReplicaMarker(storage: StorageClient, signal?: AbortSignal): Promise<{ marker: Heartbeat | null; note?: string }> {
  try {
    return { marker: await readHeartbeat(storage, signal) };
  } catch (err) {
    if (isPitrError(err, 'OBJECT_CORRUPT')) return { marker: null, note: err.message };
    if (isPitrError(err, 'ABORTED')) throw err;
    if (!(await storage.exists(signal ? { signal } : {}).catch(() => true))) {
      throw new PitrError('REPLICA_NOT_FOUND', `replica ${storage.url} does not exist`, 'check the URL; a file replica is a directory created by `pitr replicate`', { cause: err });
    }
    throw err;
  }
}

/** Replace the replica's heartbeat (for the agent). */
export async function writeHeartbeat(storage: StorageClient, h: Heartbeat, signal?: AbortSignal): Promise<void> {
  await storage.put(HEARTBEAT_KEY, encodeHeartbeat(h), signal ? { signal } : {});
}

function heartbeatProblem(v: unknown): string | undefined {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) return 'not a JSON object';
  const o = v as Record<string, unknown>;
  if (o['version'] !== 1) return `version must be 1, got ${show(o['version'])}`;
  for (const k of ['time', 'commitTime'] as const) {
    if (!isSafeNonNegative(o[k])) return `${k} must be a non-negative integer (ms), got ${show(o[k])}`;
  }
  if (!isSafeNonNegative(o['txid'])) return `txid must be a non-negative integer, got ${show(o['txid'])}`;
  if (typeof o['generation'] !== 'string' || !isGenerationId(o['generation'])) {
    return `generation must be 16 lowercase hex characters, got ${show(o['generation'])}`;
  }
  const a = o['agent'];
  if (typeof a !== 'object' || a === null || Array.isArray(a)) return 'agent must be an object';
  const agent = a as Record<string, unknown>;
  if (typeof agent['host'] !== 'string') return `agent.host must be a string, got ${show(agent['host'])}`;
  if (!isSafeNonNegative(agent['pid'])) return `agent.pid must be a non-negative integer, got ${show(agent['pid'])}`;
  if (typeof agent['version'] !== 'string') return `agent.version must be a string, got ${show(agent['version'])}`;
  const ends = o['ends'];
  if (ends !== undefined) {
    if (!Array.isArray(ends) || ends.length > MAX_HEARTBEAT_ENDS) return `ends must be a list of at most ${MAX_HEARTBEAT_ENDS} entries`;
    for (const e of ends as unknown[]) {
      if (typeof e !== 'object' || e === null || Array.isArray(e)) return 'ends entries must be objects';
      const x = e as Record<string, unknown>;
      if (typeof x['generation'] !== 'string' || !isGenerationId(x['generation'])) return `ends: generation must be 16 lowercase hex characters, got ${show(x['generation'])}`;
      if (!isSafeNonNegative(x['txid']) || !isSafeNonNegative(x['commitTime'])) return 'ends: txid and commitTime must be non-negative integers';
    }
  }
  return undefined;
}

function isSafeNonNegative(v: unknown): v is number {
  return typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;
}

function show(v: unknown): string {
  if (v === undefined) return 'nothing';
  const s = JSON.stringify(v) ?? String(v);
  return s.length > 40 ? `${s.slice(0, 40)}...` : s;
}
