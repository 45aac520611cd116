import { readFile } from 'node:fs/promises';
import { join } from 'node:path';

import { errnoCode, isPitrError } from '../errors.js';
import type { Logger } from '../log.js';
import type { StorageClient } from '../storage/storage-client.js';
import { writeLocalFileDurably, tempPathFor } from '../util/fs-atomic.js';
import { ReplicaLease } from './lease.js';
import { newLeaseOwner } from './lease-record.js';

/** In the state directory: the agent id of the agent that used it last (see previousAgentIds). */
const AGENT_ID_FILE = 'agent-id';

/**
 * Take the lease on every replica, in order, for a new agent process. The caller holds the state
 * directory's lock, so the agent that last used this state directory is gone: its leases are
 * taken at once instead of after they expire. On any failure the leases already taken are
 * released and the error is rethrown (REPLICA_LEASED names the holder).
 */
export async function acquireReplicaLeases(
  replicas: readonly StorageClient[],
  opts: {
    stateDir: string;
    takeover: boolean;
    periodMs?: number;
    log: Logger;
    /** Run once a lease is held (the identity check); a replica whose check fails is never written. */
    onTaken?: (replica: StorageClient) => Promise<void>;
  },
): Promise<ReplicaLease[]> {
  const owner = newLeaseOwner();
  const idFile = join(opts.stateDir, AGENT_ID_FILE);
  const previous: string[] = [];
  try {
    const text = (await readFile(idFile, 'utf8')).trim();
    if (/^[0-9a-f]{16}$/.test(text)) previous.push(text);
  } catch (err) {
    if (errnoCode(err) !== 'ENOENT') opts.log.warn('could not read the previous agent id from the state directory', { err });
  }
  // Recorded before any lease is taken: if this process dies holding one, the next agent on this
  // state directory knows it.
  await writeLocalFileDurably(tempPathFor(idFile), idFile, `${owner.agentId}\n`);
  const leases: ReplicaLease[] = [];
  try {
    for (const r of replicas) {
      const leaseOpts = {
        owner,
        takeover: opts.takeover,
        previousAgentIds: previous,
        log: opts.log,
        ...(opts.periodMs !== undefined && { periodMs: opts.periodMs }),
      };
      let lease: ReplicaLease;
      try {
        lease = await ReplicaLease.acquire(r, leaseOpts);
      } catch (err) {
        // An unreachable replica must not keep the agent (capture, the other replicas) from
        // starting: it gets no writes until its lease is taken, in the background. One that
        // answers "no" (credentials, a missing bucket, a read-only file system) is refused now:
        // retrying would never cure it, and the operator is there to read the error.
        if (!isPitrError(err, 'STORAGE_IO') || err.permanent) throw err;
        opts.log.warn('replica unreachable at startup: capture starts anyway; it gets no writes until this agent holds its lease', { replica: r.url, err });
        leases.push(ReplicaLease.pending(r, leaseOpts, async () => {
          await opts.onTaken?.(r);
        }));
        continue;
      }
      leases.push(lease);
      await opts.onTaken?.(r);
    }
  } catch (err) {
    await Promise.all(leases.map((l) => l.release()));
    throw err;
  }
  for (const l of leases) if (l.held !== undefined) l.start();
  // After a takeover, nothing is listed or written until the old holder's lease has run out.
  const quietUntil = Math.max(0, ...leases.map((l) => l.quietUntil));
  if (quietUntil > Date.now()) {
    opts.log.info('took over: waiting for the previous holder\'s lease to run out before writing', { until: new Date(quietUntil).toISOString() });
    await new Promise((r) => setTimeout(r, quietUntil - Date.now()));
  }
  return leases;
}
