import { PitrError } from '../errors.js';
import type { StorageClient } from './storage-client.js';

/*
 * Backends by URL scheme. The core reaches a backend only through here (openStorage): a backend
 * registers a small descriptor, its URL parser and an open() that loads the implementation on
 * demand, so a user of file replicas never loads the AWS SDK, and the registry imports no backend.
 */

/** What every parsed replica URL has; each backend adds its own fields. */
export interface ParsedReplicaUrl {
  scheme: string;
  /** Normalized display form, parseable again to the same value; never contains secrets. */
  url: string;
}

/**
 * Resources that backends share between the replicas one process opens (connection pools, SDK
 * clients), each kept under the name its backend gives it. One agent serving many databases opens
 * every replica with the same SharedResources, so replicas on one store share their connections.
 */
export class SharedResources {
  private readonly byName = new Map<string, unknown>();

  /** The resource named `name`, made by `make` on first use. */
  get<T>(name: string, make: () => T): T {
    if (!this.byName.has(name)) this.byName.set(name, make());
    return this.byName.get(name) as T;
  }
}

/** The process's resources: what openStorage shares when the caller gives none. */
export const processResources = new SharedResources();

export interface OpenContext {
  /** Where bare paths resolve (default process.cwd()). */
  cwd: string;
  shared: SharedResources;
}

export interface StorageBackend<P extends ParsedReplicaUrl = ParsedReplicaUrl> {
  /** Lower-case URL scheme without the colon ("s3"). */
  readonly scheme: string;
  /** Parse and check a URL of this scheme; throws PitrError REPLICA_URL_INVALID. No I/O, no heavy imports. */
  parse(input: string, cwd: string): P;
  /** A client for a parsed URL; loads the implementation on first use. Should do no I/O. */
  open(parsed: P, ctx: OpenContext): Promise<StorageClient>;
  /** One line for the "accepted forms" hint of an unparseable replica. */
  readonly example: string;
}

const backends = new Map<string, StorageBackend<ParsedReplicaUrl>>();

/** Make `backend` the one for its scheme (a later registration replaces an earlier one). */
export function registerBackend<P extends ParsedReplicaUrl>(backend: StorageBackend<P>): void {
  backends.set(backend.scheme.toLowerCase(), backend as unknown as StorageBackend<ParsedReplicaUrl>);
}

/** The backend for `scheme`, or undefined. */
export function backendFor(scheme: string): StorageBackend | undefined {
  return backends.get(scheme.toLowerCase());
}

/** Registered schemes, in registration order. */
export function registeredSchemes(): string[] {
  return [...backends.keys()];
}

/** The accepted forms of a replica, from the registered backends. */
export function acceptedForms(): string {
  return [...backends.values()].map((b) => b.example).join(', or ');
}

/** PitrError REPLICA_URL_INVALID for `input`; the hint defaults to the accepted forms. */
export function invalidReplicaUrl(input: string, why: string, hint: string = `Use ${acceptedForms()}.`): PitrError {
  return new PitrError('REPLICA_URL_INVALID', `invalid replica "${input}": ${why}`, hint);
}
