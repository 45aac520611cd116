import { randomBytes } from 'node:crypto';
import { hostname } from 'node:os';

import { PitrError } from '../errors.js';

/** The lease object, at the replica root (not a pitr data object: listings of generations/ skip it). */
export const LEASE_KEY = 'lease.json';

export interface LeaseOwner {
  host: string;
  pid: number;
  /** Random per agent process. */
  agentId: string;
}

/** What lease.json holds (version 1). */
export interface LeaseRecord {
  version: 1;
  owner: LeaseOwner;
  /** Incremented by every agent that takes the lease; a renewal keeps it. */
  epoch: number;
  /** ms since the epoch, by the holder's clock, taken before the write that set it was sent. */
  expiresAt: number;
  takenAt: number;
  renewedAt: number;
  /** Set by a holder that stopped cleanly: the lease is free at once. */
  released?: boolean;
}

/** A fresh owner for this process. */
export function newLeaseOwner(): LeaseOwner {
  return { host: hostname(), pid: process.pid, agentId: randomBytes(8).toString('hex') };
}

/**
 * Free to take: released, expired, or held by an agent that used this agent's state directory
 * before (see LeaseOptions.previousAgentIds).
 */
export function isFree(r: LeaseRecord, now: number, previousAgentIds: readonly string[] | undefined): boolean {
  return r.released === true || r.expiresAt <= now || (previousAgentIds ?? []).includes(r.owner.agentId);
}

export function describeOwner(o: LeaseOwner): string {
  return `agent ${o.agentId} (pid ${o.pid} on ${o.host})`;
}

export function describeLoss(holder: LeaseRecord | undefined): string {
  return holder === undefined ? 'this agent lost its lease' : `this agent lost its lease to ${describeOwner(holder.owner)}, epoch ${holder.epoch}`;
}

export function leasedError(url: string, r: LeaseRecord): PitrError {
  const expires = new Date(r.expiresAt).toISOString();
  return new PitrError(
    'REPLICA_LEASED',
    `replica ${url} is leased by ${describeOwner(r.owner)} until ${expires} (renewed while it runs)`,
    'Another agent replicates to this replica: give this database another replica (a different directory or prefix). ' +
      'If that agent is really gone, wait until its lease expires, or run pitr replicate with --takeover.',
  );
}

export function encodeLease(r: LeaseRecord): Uint8Array {
  return Buffer.from(`${JSON.stringify(r, null, 2)}\n`);
}

export function decodeLease(bytes: Uint8Array, url: string): LeaseRecord {
  let v: unknown;
  try {
    v = JSON.parse(Buffer.from(bytes).toString('utf8'));
  } catch {
    v = undefined;
  }
  const r = v as Partial<LeaseRecord> | undefined;
  const o = r?.owner as Partial<LeaseOwner> | undefined;
  if (
    r === undefined || r === null || typeof r !== 'object' || r.version !== 1 || typeof r.epoch !== 'number' ||
    typeof r.expiresAt !== 'number' || typeof o !== 'object' || o === null || typeof o.agentId !== 'string' ||
    typeof o.host !== 'string' || typeof o.pid !== 'number'
  ) {
    throw new PitrError('OBJECT_CORRUPT', `${LEASE_KEY} in ${url} is not a pitr lease`,
      `Remove ${LEASE_KEY} from the replica if no agent is running against it, then start the agent again.`);
  }
  return { takenAt: r.expiresAt, renewedAt: r.expiresAt, ...r } as LeaseRecord;
}
