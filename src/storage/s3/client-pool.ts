import { createHash } from 'node:crypto';

import { S3Client, type S3ClientConfig } from '@aws-sdk/client-s3';

import { Semaphore } from '../../util/bounded.js';
import { watchedAgents } from './first-byte-timeout.js';
import type { S3Settings, S3StorageOptions } from './s3-options.js';

/*
 * One SDK client per store. An agent with many databases opens a replica per database, often
 * s3://bucket/tenants/a, s3://bucket/tenants/b... on one endpoint with one set of credentials: a
 * client each would mean a connection pool, keep-alive sockets and TLS sessions each. Storages
 * that match share one client; the client is destroyed when the last of them closes. Each storage
 * keeps its own maxConcurrency; a pool made with `storeConcurrency` also bounds the requests in
 * flight through each client, across all its storages (the agent's limit per store).
 */

/** A share of a client: release it once (close()); the client goes when every share has. */
export interface S3ClientLease {
  readonly client: S3Client;
  /** Requests in flight at once through this client, across every storage that shares it (storeConcurrency), if bounded. */
  readonly storePermits: Semaphore | undefined;
  release(): void;
}

interface Entry {
  client: S3Client;
  storePermits: Semaphore | undefined;
  users: number;
}

type Credentials = S3StorageOptions['credentials'];

export class S3ClientPool {
  private readonly entries = new Map<string, Entry>();

  /** storeConcurrency: requests in flight at once through each client, whatever the storages' own limits. */
  constructor(private readonly opts: { storeConcurrency?: number } = {}) {}

  /** A share of the client for `settings` and `credentials`, made on first use. */
  acquire(settings: Readonly<S3Settings>, credentials: Credentials): S3ClientLease {
    const key = poolKey(settings, credentials);
    let entry = this.entries.get(key);
    if (entry === undefined) {
      const { storeConcurrency } = this.opts;
      entry = { client: newClient(settings, credentials), storePermits: storeConcurrency === undefined ? undefined : new Semaphore(storeConcurrency), users: 0 };
      this.entries.set(key, entry);
    }
    entry.users++;
    const held = entry;
    let released = false;
    return {
      client: held.client,
      storePermits: held.storePermits,
      release: () => {
        // Twice would take another storage's share: the client would die under it.
        if (released) return;
        released = true;
        if (--held.users > 0) return;
        if (this.entries.get(key) === held) this.entries.delete(key);
        held.client.destroy();
      },
    };
  }

  /** Clients open now (for tests and diagnostics). */
  get size(): number {
    return this.entries.size;
  }
}

/** A client of its own, for a storage given no pool: released, it is destroyed. */
export function ownClient(settings: Readonly<S3Settings>, credentials: Credentials): S3ClientLease {
  return new S3ClientPool().acquire(settings, credentials);
}

/**
 * What makes two clients interchangeable: everything the SDK client and its agents are built
 * with. Not the bucket or prefix (per request), nor retries and concurrency (the storage's). The
 * secret is hashed so that the key, unlike the credentials, is harmless if it is ever printed.
 */
function poolKey(s: Readonly<S3Settings>, credentials: Credentials): string {
  const who = credentials === undefined
    ? 'default-chain'
    : createHash('sha256').update(JSON.stringify([credentials.accessKeyId, credentials.secretAccessKey, credentials.sessionToken ?? ''])).digest('hex');
  return JSON.stringify([s.endpoint ?? '', s.region, s.forcePathStyle, s.checksumsWhenRequired, s.firstByteTimeoutMs, s.requestTimeoutMs, who]);
}

function newClient(settings: Readonly<S3Settings>, credentials: Credentials): S3Client {
  const { endpoint } = settings;
  const config: S3ClientConfig = {
    region: settings.region,
    forcePathStyle: settings.forcePathStyle,
    // Retries are ours (request-runner.ts): the SDK's own would sleep through an abort.
    maxAttempts: 1,
    requestHandler: {
      // Our agents: they time the waits for the store (connecting, and from the request sent to
      // the answer's first byte), which the SDK's own timeouts cannot tell apart from a transfer.
      ...watchedAgents({ ms: settings.firstByteTimeoutMs, maxMs: settings.requestTimeoutMs }),
      // Socket inactivity: a request body or an answer that stops moving mid-transfer.
      socketTimeout: settings.requestTimeoutMs,
    },
  };
  if (endpoint !== undefined) {
    config.endpoint = endpoint;
    // The SDK's default since early 2025 (CRC checksum headers on every upload, aws-chunked
    // trailers on streamed ones, checksum checks on reads) is not understood by several
    // S3-compatible stores: they reject the request, or fail the read check. WHEN_REQUIRED is
    // the behaviour they were built against. pitr's own checksums cover integrity anyway.
    config.requestChecksumCalculation = 'WHEN_REQUIRED';
    config.responseChecksumValidation = 'WHEN_REQUIRED';
  }
  if (credentials !== undefined) config.credentials = { ...credentials };
  return new S3Client(config);
}
