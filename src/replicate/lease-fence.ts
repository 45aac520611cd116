import type { Readable } from 'node:stream';

import { PitrError } from '../errors.js';
import type { ByteRange, ObjectInfo, PutBody, RequestOptions, StorageClient } from '../storage/storage-client.js';

/** What the fence needs of the lease: when writing stops being allowed. */
interface LeaseState {
  /** When the lease was lost to another agent (0 = not lost). */
  lostAt: number;
  /** Until when the last successful take or renewal lets this agent write. */
  validUntil: number;
}

/** Writes under way through a lease holder's storage: aborted the moment this agent may no longer write. */
export class WriteFence {
  private readonly inflight = new Set<AbortController>();
  private timer: NodeJS.Timeout | undefined;

  constructor(private readonly url: string, private readonly lease: () => LeaseState) {}

  /**
   * A signal for one write that aborts when this agent may no longer write here: the lease lost, or
   * run out without a renewal. A write checked at its start could otherwise still land long after
   * (a large upload), when a new holder, having waited out this lease, writes the same txids.
   * `done` must be called when the write settles.
   */
  open(signal: AbortSignal | undefined): { signal: AbortSignal; done: () => void } {
    const ac = new AbortController();
    const onAbort = (): void => ac.abort(signal?.reason);
    signal?.addEventListener('abort', onAbort, { once: true });
    if (signal?.aborted) ac.abort(signal.reason);
    this.inflight.add(ac);
    this.timer ??= setInterval(() => this.check(), 250).unref();
    return {
      signal: ac.signal,
      done: () => {
        signal?.removeEventListener('abort', onAbort);
        this.inflight.delete(ac);
        if (this.inflight.size === 0 && this.timer) {
          clearInterval(this.timer);
          this.timer = undefined;
        }
      },
    };
  }

  /** Abort every write under way once this agent may no longer write (the 1 s of margin the new holder waits covers the check's period). */
  check(): void {
    const { lostAt, validUntil } = this.lease();
    if (lostAt === 0 && Date.now() < validUntil) return;
    for (const ac of this.inflight) {
      ac.abort(new PitrError('REPLICA_LEASE_LOST', `write to ${this.url} stopped: this agent's lease ${lostAt !== 0 ? 'was lost' : 'ran out before it could be renewed'}`, 'it is retried once the lease is renewed, or never when another agent took it'));
    }
  }
}

/** What FencedStorage needs of the lease (ReplicaLease). */
export interface FenceHolder {
  assertWritable(key: string): void;
  fence(signal: AbortSignal | undefined): { signal: AbortSignal; done: () => void };
}

/** The replica as a lease holder may write it: put and delete refuse once the lease is lost. */
export class FencedStorage implements StorageClient {
  readonly url: string;

  constructor(private readonly inner: StorageClient, private readonly lease: FenceHolder) {
    this.url = inner.url;
  }

  async put(key: string, body: PutBody, opts?: RequestOptions & { size?: number }): Promise<void> {
    this.lease.assertWritable(key);
    const fence = this.lease.fence(opts?.signal);
    try {
      await this.inner.put(key, body, { ...opts, signal: fence.signal });
    } finally {
      fence.done();
    }
  }

  get(key: string, opts?: RequestOptions & { range?: ByteRange }): Promise<Uint8Array> {
    return this.inner.get(key, opts);
  }

  getStream(key: string, opts?: RequestOptions): Promise<Readable> {
    return this.inner.getStream(key, opts);
  }

  list(prefix: string, opts?: RequestOptions): Promise<ObjectInfo[]> {
    return this.inner.list(prefix, opts);
  }

  async delete(keys: readonly string[], opts?: RequestOptions): Promise<void> {
    this.lease.assertWritable(keys[0] ?? '');
    const fence = this.lease.fence(opts?.signal);
    try {
      await this.inner.delete(keys, { ...opts, signal: fence.signal });
    } finally {
      fence.done();
    }
  }

  exists(opts?: RequestOptions): Promise<boolean> {
    return this.inner.exists(opts);
  }

  close(): Promise<void> {
    return this.inner.close();
  }
}
