import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

import { PitrError } from '../errors.js';
import { FileStorage } from './file/file-storage.js';
import type { StorageClient } from './storage-client.js';

export interface FileReplicaUrl {
  scheme: 'file';
  /** Absolute directory path. */
  path: string;
  /** Normalized display form, file:///abs/path. */
  url: string;
}

export interface S3ReplicaUrl {
  scheme: 's3';
  bucket: string;
  /** Key prefix inside the bucket, without leading or trailing '/'; '' for the bucket root. */
  prefix: string;
  params: Record<string, string>;
  /** Normalized display form, s3://bucket/prefix?sorted-params. */
  url: string;
}

export type ReplicaUrl = FileReplicaUrl | S3ReplicaUrl;

/**
 * Query parameters an s3:// URL may carry. Unknown ones are rejected rather than ignored: a
 * misspelt option silently ignored would send backups somewhere the user did not intend.
 * The S3 backend extends this list when it learns new options.
 */
export const S3_URL_PARAMS: readonly string[] = [
  'endpoint', 'region', 'force-path-style', 'sse', 'sse-kms-key-id', 'storage-class',
  'first-byte-timeout', 'request-timeout',
];

const ACCEPTED_FORMS =
  'Use a directory path (/var/backups/app or ./backups), a file URL (file:///var/backups/app), ' +
  'or an S3 URL (s3://bucket/prefix, optionally ?region=us-east-1&endpoint=https://host:9000&force-path-style=true).';

/**
 * Parse a replica URL or bare directory path. Bare paths resolve against `cwd`. Throws
 * PitrError REPLICA_URL_INVALID with the accepted forms as hint. Does no I/O.
 */
export function parseReplicaUrl(input: string, cwd: string = process.cwd()): ReplicaUrl {
  if (input.trim() === '') throw invalid(input, 'the replica is empty');

  const scheme = schemeOf(input);
  if (scheme === undefined) return parseBarePath(input, cwd);
  switch (scheme) {
    case 'file':
      return parseFileUrl(input);
    case 's3':
      return parseS3Url(input);
    default:
      throw invalid(input, `"${scheme}:" replicas are not supported`);
  }
}

/**
 * Open the backend for a replica URL or path. The only place that maps replicas to backends, so
 * the core stays free of their dependencies (the agent's spool, always a local directory, is a
 * FileStorage of its own). Performs no I/O for file replicas; call exists() to
 * tell a wrong URL from an empty replica.
 */
export async function openStorage(input: string, opts: { cwd?: string } = {}): Promise<StorageClient> {
  const parsed = parseReplicaUrl(input, opts.cwd);
  switch (parsed.scheme) {
    case 'file':
      return new FileStorage(parsed.path, parsed.url);
    case 's3': {
      // Loaded on demand so that the AWS SDK is only paid for (startup time, memory) by users
      // of S3 replicas. Constructing the client does no I/O either.
      const { S3Storage } = await import('./s3/s3-storage.js');
      return S3Storage.fromReplicaUrl(parsed);
    }
    default: {
      const unreachable: never = parsed;
      throw new Error(`unhandled replica scheme in ${JSON.stringify(unreachable)}`);
    }
  }
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

function parseBarePath(input: string, cwd: string): FileReplicaUrl {
  if (input.includes('\0')) throw invalid(input, 'paths may not contain NUL');
  if (input === '~' || input.startsWith('~/')) {
    // Only a shell expands "~"; from a config file it would become a directory named "~".
    throw invalid(input, '"~" is not expanded here', 'Give the full path, e.g. /home/me/backups.');
  }
  const abs = path.resolve(cwd, input);
  return { scheme: 'file', path: abs, url: pathToFileURL(abs).href };
}

function parseFileUrl(input: string): FileReplicaUrl {
  if (!/^file:\/\//i.test(input)) {
    throw invalid(input, 'file URLs must start with file:// and name an absolute path',
      'Write file:///abs/path, or give a relative path without "file:".');
  }
  let url: URL;
  try {
    url = new URL(input);
  } catch {
    throw invalid(input, 'it is not a valid file URL');
  }
  if (url.search !== '' || url.hash !== '') {
    throw invalid(input, 'file URLs take no "?" or "#" part', 'Percent-encode them (%3F, %23) if they are part of the path.');
  }
  let p: string;
  try {
    p = fileURLToPath(url);
  } catch {
    // file://relative/x parses with host "relative": the classic mistake for a relative path.
    throw invalid(input, 'file URLs must be absolute (file:///abs/path); "file://" followed by a name is a host, not a relative path',
      'Write file:///abs/path, or give a relative path without "file://".');
  }
  const abs = path.resolve(p);
  return { scheme: 'file', path: abs, url: pathToFileURL(abs).href };
}

function parseS3Url(input: string): S3ReplicaUrl {
  // Parsed by hand: WHATWG URL would resolve "." and ".." in the prefix and accept userinfo.
  const m = /^s3:\/\/([^/?#]*)(\/[^?#]*)?(\?[^#]*)?$/i.exec(input);
  if (!m) {
    throw invalid(input, input.includes('#') ? 'S3 URLs take no "#" part' : 'S3 URLs look like s3://bucket/prefix');
  }
  const [, bucket = '', rawPath = '', rawQuery = ''] = m;

  if (bucket.includes('@')) {
    throw invalid(input, 'credentials do not belong in the replica URL',
      'Remove them; pitr reads AWS credentials from the environment (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY) or the usual AWS config.');
  }
  if (bucket === '') throw invalid(input, 'the bucket name is missing');
  if (bucket.includes(':')) {
    throw invalid(input, 'the bucket may not have a port', 'Give the server with ?endpoint=http://host:port.');
  }
  // Loose on purpose (legacy buckets allow capitals and underscores); strict enough to catch typos.
  if (!/^[A-Za-z0-9][A-Za-z0-9._-]{1,254}$/.test(bucket)) {
    throw invalid(input, `"${bucket}" is not a valid bucket name`);
  }

  let segments: string[];
  try {
    segments = rawPath.split('/').filter((s) => s !== '').map((s) => decodeURIComponent(s));
  } catch {
    throw invalid(input, 'the prefix has a malformed percent-escape');
  }
  if (/\/\/./.test(rawPath)) throw invalid(input, 'the prefix may not contain empty segments ("//")');
  if (segments.some((s) => s === '.' || s === '..' || s.includes('/') || s.includes('\\'))) {
    throw invalid(input, 'the prefix may not contain ".", ".." or encoded separators');
  }
  const prefix = segments.join('/');

  const params: Record<string, string> = {};
  for (const [name, value] of new URLSearchParams(rawQuery)) {
    if (!S3_URL_PARAMS.includes(name)) {
      throw invalid(input, `unknown parameter "${name}"`, `Accepted parameters: ${S3_URL_PARAMS.join(', ')}.`);
    }
    if (name in params) throw invalid(input, `parameter "${name}" is given twice`);
    params[name] = value;
  }
  checkS3Params(input, params);

  const query = Object.keys(params)
    .sort()
    .map((k) => `${k}=${encodeURIComponent(params[k]!).replace(/%3A/g, ':').replace(/%2F/g, '/')}`)
    .join('&');
  const url = `s3://${bucket}${prefix === '' ? '' : `/${segments.map(encodeURIComponent).join('/')}`}${query === '' ? '' : `?${query}`}`;
  return { scheme: 's3', bucket, prefix, params, url };
}

function checkS3Params(input: string, params: Record<string, string>): void {
  const endpoint = params['endpoint'];
  if (endpoint !== undefined) {
    let ep: URL | undefined;
    try {
      ep = new URL(endpoint);
    } catch {
      ep = undefined;
    }
    if (ep === undefined || (ep.protocol !== 'http:' && ep.protocol !== 'https:')) {
      throw invalid(input, `endpoint "${endpoint}" is not an http:// or https:// URL`);
    }
    if (ep.username !== '' || ep.password !== '') {
      throw invalid(input, 'credentials do not belong in the endpoint',
        'Remove them; pitr reads AWS credentials from the environment or the usual AWS config.');
    }
  }
  const region = params['region'];
  if (region !== undefined && !/^[a-z0-9-]+$/i.test(region)) {
    throw invalid(input, `"${region}" is not a valid region`);
  }
  const pathStyle = params['force-path-style'];
  if (pathStyle !== undefined && pathStyle !== 'true' && pathStyle !== 'false') {
    throw invalid(input, `force-path-style must be true or false, not "${pathStyle}"`);
  }
}

function invalid(input: string, why: string, hint: string = ACCEPTED_FORMS): PitrError {
  return new PitrError('REPLICA_URL_INVALID', `invalid replica "${input}": ${why}`, hint);
}
