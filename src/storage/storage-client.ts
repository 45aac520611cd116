import type { Readable } from 'node:stream';

/** One stored object as a listing reports it. Keys are relative to the replica root, '/'-separated. */
export interface ObjectInfo {
  key: string;
  size: number;
  lastModified: Date;
}

export interface RequestOptions {
  signal?: AbortSignal;
}

/** Inclusive byte range, like HTTP Range: bytes=start-end. */
export interface ByteRange {
  start: number;
  end: number;
}

/**
 * What put() stores: bytes, or a stream of byte chunks (a Readable is one). A stream is read in
 * order, and put() is done with each chunk (written or copied) before it asks for the next, so a
 * producer may hand out the same reused buffer as every chunk: a snapshot of gigabytes then costs
 * no fresh buffer per chunk (those were the agent's peak RSS, growing with the snapshot's size).
 */
export type PutBody = Uint8Array | AsyncIterable<Uint8Array>;

/** Condition of a conditional put: create only if absent, or replace only the version named. */
export type PutCondition = { ifNoneMatch: '*' } | { ifMatch: string };

/** An object's bytes and its version tag (S3's ETag; the file backend's content hash). */
export interface VersionedObject {
  body: Uint8Array;
  etag: string;
}

/**
 * Compare-and-swap on small objects (the lease and identity objects), for backends that can do
 * it. A put whose condition does not hold raises PitrError code PRECONDITION_FAILED and stores
 * nothing. Missing keys in getVersioned raise OBJECT_NOT_FOUND. Some S3-compatible stores
 * (s3rver) silently ignore If-Match / If-None-Match: callers re-read before and after they write
 * (see replicate/lease.ts).
 */
export interface ConditionalStorage {
  getVersioned(key: string, opts?: RequestOptions): Promise<VersionedObject>;
  putConditional(key: string, body: Uint8Array, cond: PutCondition, opts?: RequestOptions): Promise<{ etag: string }>;
}

/** True when `s` offers ConditionalStorage. */
export function hasConditional(s: StorageClient): s is StorageClient & ConditionalStorage {
  const c = s as Partial<ConditionalStorage>;
  return typeof c.getVersioned === 'function' && typeof c.putConditional === 'function';
}

/**
 * The whole contract between pitr's core and a replica backend. Objects are immutable: the core
 * never overwrites a key with different content. A put is atomic: readers see the whole object or
 * nothing. Missing keys raise PitrError code OBJECT_NOT_FOUND. Other failures raise PitrError
 * code STORAGE_IO with the backend's error as `cause`.
 */
export interface StorageClient {
  /** The replica URL, for messages and logs (never contains secrets). */
  readonly url: string;
  /** Store `body` at `key`, durably, replacing nothing visible until complete. See PutBody. */
  put(key: string, body: PutBody, opts?: RequestOptions & { size?: number }): Promise<void>;
  /** Whole object, or the inclusive byte range of it. */
  get(key: string, opts?: RequestOptions & { range?: ByteRange }): Promise<Uint8Array>;
  /** The object as a stream, for objects too large to hold in memory. */
  getStream(key: string, opts?: RequestOptions): Promise<Readable>;
  /** Every object whose key starts with `prefix`, in ascending key order, across all pages. */
  list(prefix: string, opts?: RequestOptions): Promise<ObjectInfo[]>;
  /** Delete keys; deleting a missing key is not an error. */
  delete(keys: readonly string[], opts?: RequestOptions): Promise<void>;
  /** True when the replica root exists (a directory, a bucket). Used to tell "wrong URL" from "empty". */
  exists(opts?: RequestOptions): Promise<boolean>;
  /** Release connections and handles. */
  close(): Promise<void>;
}
