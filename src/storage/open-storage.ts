import type { FileReplicaUrl } from './file/file-url.js';
import type { S3ReplicaUrl } from './s3/s3-url.js';
import { backendFor, invalidReplicaUrl as invalid, processResources, type SharedResources } from './registry.js';
import type { StorageClient } from './storage-client.js';
import './builtin-backends.js';

export type { FileReplicaUrl } from './file/file-url.js';
export type { S3ReplicaUrl } from './s3/s3-url.js';
export { S3_URL_PARAMS } from './s3/s3-url.js';

/** Every replica URL a registered backend parses; a new backend adds its type here. */
export type ReplicaUrl = FileReplicaUrl | S3ReplicaUrl;

export interface OpenStorageOptions {
  /** Where bare paths resolve; default process.cwd(). */
  cwd?: string;
  /**
   * Resources shared with the other replicas opened with the same value (S3: one SDK client and
   * connection pool per endpoint, region and credentials). Default: shared process-wide.
   */
  shared?: SharedResources;
}

/**
 * Parse a replica URL or bare directory path. Bare paths resolve against `cwd`. Throws
 * PitrError REPLICA_URL_INVALID with the accepted forms as hint. Does no I/O.
 */
export function parseReplicaUrl(input: string, cwd: string = process.cwd()): ReplicaUrl {
  if (input.trim() === '') throw invalid(input, 'the replica is empty');
  const scheme = schemeOf(input) ?? 'file';
  const backend = backendFor(scheme);
  if (backend === undefined) throw invalid(input, `"${scheme}:" replicas are not supported`);
  return backend.parse(input, cwd) as ReplicaUrl;
}

/**
 * Open the backend for a replica URL or path, through the registry (registry.ts): the core never
 * imports a backend. Performs no I/O for file replicas; call exists() to tell a wrong URL from an
 * empty replica. close() the client when done: it may hold a share of a pooled connection.
 */
export async function openStorage(input: string, opts: OpenStorageOptions = {}): Promise<StorageClient> {
  const cwd = opts.cwd ?? process.cwd();
  const parsed = parseReplicaUrl(input, cwd);
  const backend = backendFor(parsed.scheme);
  if (backend === undefined) throw new Error(`no backend for parsed scheme "${parsed.scheme}"`);
  return backend.open(parsed, { cwd, shared: opts.shared ?? processResources });
}

/** Lower-cased scheme when `input` looks like a URL (or a misspelt one), undefined for a path. */
function schemeOf(input: string): string | undefined {
  // "C:\backups" is a Windows path, not a URL with scheme "c".
  if (process.platform === 'win32' && /^[A-Za-z]:[\\/]/.test(input)) return undefined;
  // Anything "word:" is treated as an attempted URL, so "s3:bucket" or "file:backups" fail loudly
  // instead of silently becoming a local directory named after the typo. A directory whose name
  // has a colon can still be given as ./name.
  const m = /^([A-Za-z][A-Za-z0-9+.-]*):/.exec(input);
  if (m) return m[1]!.toLowerCase();
  if (input.startsWith('://')) throw invalid(input, 'the URL has no scheme');
  return undefined;
}
