import { isPitrError, PitrError } from '../errors.js';
import type { Logger } from '../log.js';
import { DEFAULT_LEASE_PERIOD_MS } from '../config/defaults.js';
import { hasConditional } from '../storage/storage-client.js';
import type { ConditionalStorage, StorageClient, VersionedObject } from '../storage/storage-client.js';
import { FencedStorage, WriteFence } from './lease-fence.js';
import { decodeLease, describeLoss, describeOwner, encodeLease, isFree, LEASE_KEY, leasedError, type LeaseOwner, type LeaseRecord } from './lease-record.js';

/** Assumed bound on the clock difference between two agents' hosts. */
const CLOCK_MARGIN_MS = 1_000;

export interface LeaseOptions {
  owner: LeaseOwner;
  /** How long a lease lasts without renewal (default 30 s); renewed every third of it. */
  periodMs?: number;
  /** Take the lease even when another agent holds a live one (epoch + 1). */
  takeover?: boolean;
  /**
   * Agent ids that used this agent's state directory before: their leases are stale at once,
   * because the state lock this agent holds proves they are gone (a restart after a crash need
   * not wait for the lease to expire).
   */
  previousAgentIds?: readonly string[];
  log: Logger;
}

type Versioned = { record: LeaseRecord; etag: string };

/**
 * One agent's lease on one replica. Taken with a conditional write (create-if-absent, or
 * replace-if-match of the version read), renewed every periodMs/3 with If-Match on the version
 * held, released on clean shutdown. `storage` is the replica as the agent must write it: puts and
 * deletes fail with REPLICA_LEASE_LOST once the lease is lost (another agent took it) or has run
 * out without a successful renewal (the store unreachable for a whole period).
 *
 * Stores that ignore conditional headers (s3rver, some S3-compatible stores): every write is
 * preceded by a read of the current holder and followed by a read that checks the write is ours,
 * so two agents racing within one round trip are the remaining window; each renewal re-checks, so
 * the loser finds out within a renewal interval.
 */
export class ReplicaLease {
  readonly storage: StorageClient;
  private readonly inner: StorageClient & ConditionalStorage;
  private readonly periodMs: number;
  private record: LeaseRecord | undefined;
  private validUntil = 0;
  private lostTo: LeaseRecord | undefined;
  private lostAt = 0;
  private timer: NodeJS.Timeout | undefined;
  private renewing: Promise<void> | undefined;
  private readonly lostListeners: Array<(holder: LeaseRecord | undefined) => void> = [];
  /** Writes under way through `storage`: aborted the moment this agent may no longer write (see fence). */
  private readonly writes: WriteFence;
  /**
   * After a takeover of a live lease: when the old holder's lease has run out by its own clock, so
   * its fence has closed (see FencedStorage). The new holder writes nothing before then: the old one
   * may still be uploading transactions whose txids the new one would otherwise reuse.
   */
  quietUntil = 0;

  private constructor(inner: StorageClient & ConditionalStorage, private readonly opts: LeaseOptions) {
    this.inner = inner;
    this.periodMs = opts.periodMs ?? DEFAULT_LEASE_PERIOD_MS;
    this.writes = new WriteFence(inner.url, () => ({ lostAt: this.lostAt, validUntil: this.validUntil }));
    this.storage = new FencedStorage(inner, this);
  }

  /**
   * Take the lease on `replica`: when there is none, it expired, it was released, its holder used
   * this state directory before, or `takeover`. A live lease held by another agent is
   * REPLICA_LEASED, naming the holder and when its lease expires.
   */
  static async acquire(replica: StorageClient, opts: LeaseOptions): Promise<ReplicaLease> {
    if (!hasConditional(replica)) {
      throw new PitrError('STORAGE_IO', `replica ${replica.url} does not support the conditional writes a lease needs`, 'This is a bug in pitr: every backend implements them.');
    }
    const lease = new ReplicaLease(replica, opts);
    await lease.take();
    return lease;
  }

  get url(): string {
    return this.inner.url;
  }

  /** The lease as held (undefined before acquire). */
  get held(): Readonly<LeaseRecord> | undefined {
    return this.record;
  }

  /** When lost: who holds it now (if known) and since when. */
  get lost(): { holder: LeaseRecord | undefined; at: number } | undefined {
    return this.lostAt === 0 ? undefined : { holder: this.lostTo, at: this.lostAt };
  }

  /** True while this agent may write the replica. */
  canWrite(now = Date.now()): boolean {
    return this.lostAt === 0 && now < this.validUntil && now >= this.quietUntil;
  }

  /**
   * For a replica that could not be reached at startup: a lease not yet held (every write refused)
   * that tries to take itself every third of the period, then runs `then` (the identity check)
   * and starts renewing. Finding another agent's live lease, or `then` failing, counts as losing
   * it: the agent never writes that replica.
   */
  static pending(replica: StorageClient, opts: LeaseOptions, then: (lease: ReplicaLease) => Promise<void>): ReplicaLease {
    if (!hasConditional(replica)) throw new PitrError('STORAGE_IO', `replica ${replica.url} does not support conditional writes`, 'This is a bug in pitr.');
    const lease = new ReplicaLease(replica, opts);
    let taking = false;
    lease.timer = setInterval(() => {
      if (taking || lease.lostAt !== 0) return;
      taking = true;
      void (async () => {
        try {
          await lease.take();
        } catch (err) {
          if (isPitrError(err, 'REPLICA_LEASED')) lease.markLost((await lease.read().catch(() => undefined))?.record, err.message);
          return;
        }
        if (lease.timer) clearInterval(lease.timer);
        lease.timer = undefined;
        try {
          await then(lease);
        } catch (err) {
          lease.markLost(undefined, err instanceof Error ? err.message : String(err));
          await lease.releaseHeld();
          return;
        }
        opts.log.info('took the lease on a replica that was unreachable at startup', { replica: lease.url, epoch: lease.record?.epoch });
        lease.start();
      })().finally(() => {
        taking = false;
      });
    }, Math.max(10, Math.floor(lease.periodMs / 3)));
    lease.timer.unref();
    return lease;
  }

  /** A signal for one write that aborts when this agent may no longer write here (see WriteFence.open). */
  fence(signal: AbortSignal | undefined): { signal: AbortSignal; done: () => void } {
    return this.writes.open(signal);
  }

  /** REPLICA_LEASE_LOST unless canWrite(). */
  assertWritable(key: string): void {
    if (this.canWrite()) return;
    if (this.lostAt !== 0) {
      throw new PitrError('REPLICA_LEASE_LOST', `not writing "${key}" to ${this.url}: ${describeLoss(this.lostTo)}`,
        'Another agent took over this replica (pitr replicate --takeover). Stop this agent, or give it another replica.');
    }
    if (this.record === undefined) {
      throw new PitrError('REPLICA_LEASE_LOST', `not writing "${key}" to ${this.url}: this agent does not hold its lease yet (the store did not answer)`,
        'Writes start once the lease is taken; check that the store is reachable.');
    }
    if (Date.now() < this.quietUntil) {
      throw new PitrError('REPLICA_LEASE_LOST', `not writing "${key}" to ${this.url} yet: the previous holder's lease runs until ${new Date(this.quietUntil).toISOString()}`,
        'Writes start when it has run out.');
    }
    throw new PitrError('REPLICA_LEASE_LOST', `not writing "${key}" to ${this.url}: the lease ran out before it could be renewed (the store did not answer)`,
      'Writes resume once the lease is renewed; check that the store is reachable.');
  }

  /** Call `fn` once, when the lease is lost to another agent. */
  onLost(fn: (holder: LeaseRecord | undefined) => void): void {
    this.lostListeners.push(fn);
  }

  /** Renew every third of the period until stop() or loss. */
  start(): void {
    if (this.timer || this.lostAt !== 0) return;
    this.timer = setInterval(() => void this.renew(), Math.max(10, Math.floor(this.periodMs / 3)));
    this.timer.unref();
  }

  /** Stop renewing; then, unless lost, mark the lease released so the next agent need not wait. Best effort. */
  async release(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    if (this.renewing) await this.renewing;
    if (this.lostAt !== 0) return;
    await this.releaseHeld();
  }

  private async releaseHeld(): Promise<void> {
    if (this.record === undefined) return;
    try {
      const cur = await this.read();
      if (cur === undefined || cur.record.owner.agentId !== this.opts.owner.agentId) return;
      const now = Date.now();
      await this.inner.putConditional(LEASE_KEY, encodeLease({ ...cur.record, expiresAt: now, renewedAt: now, released: true }), { ifMatch: cur.etag });
      this.validUntil = 0;
    } catch (err) {
      this.opts.log.warn('could not release the lease; the next agent takes it when it expires', { replica: this.url, err });
    }
  }

  /** One renewal now (the timer calls this; tests may too). */
  renew(): Promise<void> {
    if (this.renewing || this.lostAt !== 0) return this.renewing ?? Promise.resolve();
    this.renewing = this.renewOnce().finally(() => {
      this.renewing = undefined;
    });
    return this.renewing;
  }

  private async renewOnce(): Promise<void> {
    const sent = Date.now();
    try {
      const cur = await this.read();
      if (cur === undefined) {
        // Deleted by hand: take it again as if new; a racing agent makes this fail, and then it is lost.
        await this.write(undefined, sent, this.record?.epoch ?? 0);
        return;
      }
      if (cur.record.owner.agentId !== this.opts.owner.agentId) {
        this.markLost(cur.record);
        return;
      }
      await this.write(cur, sent, cur.record.epoch - 1);
    } catch (err) {
      if (isPitrError(err, 'PRECONDITION_FAILED')) {
        // Someone wrote in between, or our own retried attempt had already been stored.
        const now = await this.read().catch(() => undefined);
        if (now !== undefined && now.record.owner.agentId !== this.opts.owner.agentId) this.markLost(now.record);
        return;
      }
      this.opts.log.warn('could not renew the lease; retrying', {
        replica: this.url,
        validFor: `${Math.max(0, this.validUntil - Date.now())}ms`,
        err,
      });
    }
  }

  private async take(): Promise<void> {
    const { owner, takeover, log } = this.opts;
    for (let attempt = 1; attempt <= 5; attempt++) {
      const now = Date.now();
      const cur = await this.read();
      if (cur !== undefined && !takeover && !isFree(cur.record, now, this.opts.previousAgentIds)) throw leasedError(this.url, cur.record);
      const live = cur !== undefined && !isFree(cur.record, now, this.opts.previousAgentIds);
      if (cur !== undefined && live && takeover) {
        log.warn('taking over the replica from the agent holding its lease (--takeover); it stops writing within one lease period', {
          replica: this.url,
          holder: describeOwner(cur.record.owner),
          expiresAt: new Date(cur.record.expiresAt).toISOString(),
        });
      }
      try {
        await this.write(cur, now, cur?.record.epoch ?? 0, now);
      } catch (err) {
        if (isPitrError(err, 'PRECONDITION_FAILED')) continue;
        throw err;
      }
      if (this.record?.owner.agentId === owner.agentId) {
        // Clocks of two hosts differ a little: a margin on top of the old holder's expiry.
        if (live) this.quietUntil = cur.record.expiresAt + CLOCK_MARGIN_MS;
        return;
      }
    }
    const cur = await this.read();
    if (cur !== undefined) throw leasedError(this.url, cur.record);
    throw new PitrError('REPLICA_LEASED', `could not take the lease on ${this.url}: other agents keep changing it`, 'Check that only one agent replicates to this replica.');
  }

  /**
   * Write our lease (epoch `baseEpoch` + 1) conditional on `cur`, then read it back: on a store
   * that ignores the condition, the read is what tells whether we won.
   */
  private async write(cur: Versioned | undefined, sent: number, baseEpoch: number, takenAt?: number): Promise<void> {
    const record: LeaseRecord = {
      version: 1,
      owner: this.opts.owner,
      epoch: baseEpoch + 1,
      expiresAt: sent + this.periodMs,
      takenAt: takenAt ?? this.record?.takenAt ?? sent,
      renewedAt: sent,
    };
    await this.inner.putConditional(LEASE_KEY, encodeLease(record), cur === undefined ? { ifNoneMatch: '*' } : { ifMatch: cur.etag });
    const back = await this.read();
    if (back === undefined || back.record.owner.agentId !== this.opts.owner.agentId) {
      if (this.record !== undefined && back !== undefined) this.markLost(back.record);
      return;
    }
    this.record = back.record;
    this.validUntil = sent + this.periodMs;
  }

  private async read(): Promise<Versioned | undefined> {
    let got: VersionedObject;
    try {
      got = await this.inner.getVersioned(LEASE_KEY);
    } catch (err) {
      if (isPitrError(err, 'OBJECT_NOT_FOUND')) return undefined;
      throw err;
    }
    return { record: decodeLease(got.body, this.url), etag: got.etag };
  }

  private markLost(holder: LeaseRecord | undefined, reason?: string): void {
    if (this.lostAt !== 0) return;
    this.lostAt = Date.now();
    this.lostTo = holder;
    this.writes.check();
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    this.opts.log.error('lost the lease on a replica: this agent no longer writes to it', {
      replica: this.url,
      ...(holder !== undefined && { holder: describeOwner(holder.owner), epoch: holder.epoch }),
      ...(reason !== undefined && { reason }),
    });
    for (const fn of this.lostListeners) {
      try {
        fn(holder);
      } catch (err) {
        this.opts.log.warn('lease-lost handler failed', { err });
      }
    }
  }
}
