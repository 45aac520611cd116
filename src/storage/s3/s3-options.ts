import type { S3ClientPool } from './client-pool.js';
import type { S3ReplicaUrl } from './s3-url.js';
import { PitrError } from '../../errors.js';
import { parseDuration } from '../../util/duration.js';

/*
 * What an S3 replica is configured with: URL parameters become S3StorageOptions, and options
 * with the environment's defaults become the S3Settings a client runs with.
 */

/** Retry and resource limits of one client. Every field has a default suited to a sidecar. */
export interface S3Limits {
  /** Tries per request, the first included (default 6). */
  maxAttempts: number;
  /** First backoff ceiling; doubles per retry, full jitter (default 200 ms). */
  baseDelayMs: number;
  /** Backoff ceiling (default 20 s). */
  maxDelayMs: number;
  /**
   * Per attempt: how long the store may keep a request waiting while nothing is in transfer: for a
   * connection, and from the moment the request (body included) is sent until the answer's
   * headers arrive (default 5 s; an upload waits longer by the time its body took to send, up to
   * requestTimeoutMs). A dead connection is found this fast, and the attempt is retried at once on
   * a fresh one. See first-byte-timeout.ts.
   */
  firstByteTimeoutMs: number;
  /**
   * Per attempt: how long a connection may sit idle while a request body or an answer is in
   * transfer, and how long requests that make the store work before it answers (completing a
   * multipart upload, deleting a batch of keys) wait for their answer (default 30 s). A transfer
   * that keeps moving is never cut, however slow.
   */
  requestTimeoutMs: number;
  /** Requests in flight at once through this storage (default 8); see S3ClientPool for a bound per store. */
  maxConcurrency: number;
}

export const DEFAULT_S3_LIMITS: Readonly<S3Limits> = Object.freeze({
  maxAttempts: 6,
  baseDelayMs: 200,
  maxDelayMs: 20_000,
  firstByteTimeoutMs: 5_000,
  requestTimeoutMs: 30_000,
  maxConcurrency: 8,
});

export interface S3StorageOptions extends Partial<S3Limits> {
  bucket: string;
  /** Key prefix inside the bucket, without leading or trailing '/'; '' or absent for the root. */
  prefix?: string;
  /** Default: AWS_REGION, AWS_DEFAULT_REGION, then us-east-1. */
  region?: string;
  /** An S3-compatible server (MinIO, R2, B2...). Default: AWS_ENDPOINT_URL_S3, AWS_ENDPOINT_URL, else AWS. */
  endpoint?: string;
  /** Path-style addressing (http://host/bucket/key). Default: true when an endpoint is set. */
  forcePathStyle?: boolean;
  /** Explicit credentials; default: the SDK's chain (env vars, AWS_PROFILE, SSO, instance role...). */
  credentials?: { accessKeyId: string; secretAccessKey: string; sessionToken?: string };
  /** x-amz-server-side-encryption for every put: AES256, aws:kms, aws:kms:dsse. */
  serverSideEncryption?: string;
  /** KMS key for aws:kms encryption. */
  sseKmsKeyId?: string;
  /** x-amz-storage-class for every put (STANDARD_IA, INTELLIGENT_TIERING...). */
  storageClass?: string;
  /** Display URL for messages; default s3://bucket/prefix. Must not contain secrets. */
  url?: string;
  /** Where region and endpoint defaults are read; default process.env. */
  env?: Readonly<Record<string, string | undefined>>;
  /**
   * Share the SDK client (its connections and request permits) with the other storages of this
   * pool whose endpoint, region, credentials and limits match; default: a client of its own.
   */
  clients?: S3ClientPool;
}

/** The settings a client was built with, after defaults: what tests and `--verbose` logs show. */
export interface S3Settings extends S3Limits {
  bucket: string;
  prefix: string;
  region: string;
  endpoint: string | undefined;
  forcePathStyle: boolean;
  /** True when checksums are only sent and checked where S3 requires them (custom endpoints). */
  checksumsWhenRequired: boolean;
  serverSideEncryption: string | undefined;
  sseKmsKeyId: string | undefined;
  storageClass: string | undefined;
  explicitCredentials: boolean;
}

/** Options for a parsed s3:// URL. Throws REPLICA_URL_INVALID for unusable parameter values. */
export function s3OptionsFromUrl(parsed: S3ReplicaUrl): S3StorageOptions {
  const p = parsed.params;
  const invalid = (why: string, hint: string): PitrError =>
    new PitrError('REPLICA_URL_INVALID', `invalid replica "${parsed.url}": ${why}`, hint);
  const sse = p['sse'];
  if (sse !== undefined && !['AES256', 'aws:kms', 'aws:kms:dsse'].includes(sse)) {
    throw invalid(`sse must be AES256, aws:kms or aws:kms:dsse, not "${sse}"`, 'Use ?sse=AES256 (S3-managed keys) or ?sse=aws:kms (KMS).');
  }
  const kmsKey = p['sse-kms-key-id'];
  if (kmsKey !== undefined && (sse === undefined || !sse.startsWith('aws:kms'))) {
    throw invalid('sse-kms-key-id needs sse=aws:kms (or aws:kms:dsse)', 'Add &sse=aws:kms to the replica URL.');
  }
  const storageClass = p['storage-class'];
  if (storageClass !== undefined) {
    if (!/^[A-Z][A-Z0-9_]*$/.test(storageClass)) {
      throw invalid(`"${storageClass}" is not a storage class`, 'Storage classes are upper case, e.g. STANDARD_IA or INTELLIGENT_TIERING.');
    }
    if (storageClass === 'GLACIER' || storageClass === 'DEEP_ARCHIVE') {
      // Objects there must be restored by hand (hours) before any read: a restore would fail.
      throw invalid(`storage class ${storageClass} cannot be read without an archive restore`,
        'Use STANDARD_IA, ONEZONE_IA, INTELLIGENT_TIERING or GLACIER_IR, which pitr can read directly.');
    }
  }
  const pathStyle = p['force-path-style'];
  const timeout = (name: string): number | undefined => {
    const text = p[name];
    if (text === undefined) return undefined;
    let ms: number;
    try {
      ms = parseDuration(text, name);
    } catch {
      ms = Number.NaN;
    }
    if (!(ms >= 1)) throw invalid(`${name} must be a duration like 5s or 500ms, not "${text}"`, `Give ${name} with a unit, e.g. ${name}=10s.`);
    return ms;
  };
  const firstByteTimeoutMs = timeout('first-byte-timeout');
  const requestTimeoutMs = timeout('request-timeout');
  return {
    bucket: parsed.bucket,
    prefix: parsed.prefix,
    url: parsed.url,
    ...(p['region'] !== undefined && { region: p['region'] }),
    ...(p['endpoint'] !== undefined && { endpoint: p['endpoint'] }),
    ...(pathStyle !== undefined && { forcePathStyle: pathStyle === 'true' }),
    ...(sse !== undefined && { serverSideEncryption: sse }),
    ...(kmsKey !== undefined && { sseKmsKeyId: kmsKey }),
    ...(storageClass !== undefined && { storageClass }),
    ...(firstByteTimeoutMs !== undefined && { firstByteTimeoutMs }),
    ...(requestTimeoutMs !== undefined && { requestTimeoutMs }),
  };
}

function resolveLimits(opts: Partial<S3Limits>): S3Limits {
  const pick = (name: keyof S3Limits, min: number): number => {
    const v = opts[name] ?? DEFAULT_S3_LIMITS[name];
    if (!Number.isFinite(v) || v < min) throw new RangeError(`S3Storage option ${name} must be a number >= ${min}, got ${v}`);
    return v;
  };
  return {
    maxAttempts: Math.floor(pick('maxAttempts', 1)),
    baseDelayMs: pick('baseDelayMs', 0),
    maxDelayMs: pick('maxDelayMs', 0),
    firstByteTimeoutMs: pick('firstByteTimeoutMs', 1),
    requestTimeoutMs: pick('requestTimeoutMs', 1),
    maxConcurrency: Math.floor(pick('maxConcurrency', 1)),
  };
}


/** Settings from options and the environment's defaults (AWS_REGION, AWS_ENDPOINT_URL_S3...). */
export function resolveSettings(opts: S3StorageOptions): S3Settings {
  const env = opts.env ?? process.env;
  const prefix = (opts.prefix ?? '').replace(/^\/+|\/+$/g, '');
  const endpoint = nonEmpty(opts.endpoint) ?? nonEmpty(env['AWS_ENDPOINT_URL_S3']) ?? nonEmpty(env['AWS_ENDPOINT_URL']);
  const region = nonEmpty(opts.region) ?? nonEmpty(env['AWS_REGION']) ?? nonEmpty(env['AWS_DEFAULT_REGION']) ?? 'us-east-1';
  return {
    ...resolveLimits(opts),
    bucket: opts.bucket,
    prefix,
    region,
    endpoint,
    // Non-AWS stores rarely serve virtual-host buckets (bucket.host) on a custom endpoint.
    forcePathStyle: opts.forcePathStyle ?? endpoint !== undefined,
    checksumsWhenRequired: endpoint !== undefined,
    serverSideEncryption: nonEmpty(opts.serverSideEncryption),
    sseKmsKeyId: nonEmpty(opts.sseKmsKeyId),
    storageClass: nonEmpty(opts.storageClass),
    explicitCredentials: opts.credentials !== undefined,
  };
}

function nonEmpty(v: string | undefined): string | undefined {
  return v === undefined || v === '' ? undefined : v;
}
