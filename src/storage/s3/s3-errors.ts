import { PitrError } from '../../errors.js';
import { messageOf } from '../storage-keys.js';
import { isFirstByteTimeout } from './first-byte-timeout.js';
import type { ByteRange } from '../storage-client.js';
import type { S3Settings } from './s3-options.js';

/*
 * S3 failures as pitr reports them: which SDK errors are worth another try, and the PitrError
 * (code, message naming the object, hint saying what to do, permanent flag) for each.
 */

export type Op = 'put' | 'get' | 'list' | 'delete' | 'check';

/** Where an error happened: the replica's display URL and its settings. */
export interface ErrorContext {
  url: string;
  settings: Readonly<Pick<S3Settings, 'bucket' | 'region' | 'endpoint'>>;
}

// Errors worth another try: throttling, server-side trouble, and failures of the connection.
const RETRYABLE_NAMES = new Set([
  'SlowDown', 'Throttling', 'ThrottlingException', 'TooManyRequestsException', 'RequestLimitExceeded',
  'InternalError', 'ServiceUnavailable', 'RequestTimeout', 'RequestTimeoutException', 'TimeoutError',
  'PriorRequestNotComplete', 'BandwidthLimitExceeded',
]);
const RETRYABLE_ERRNO = new Set([
  'ECONNRESET', 'ECONNREFUSED', 'ECONNABORTED', 'EPIPE', 'ETIMEDOUT', 'ENETUNREACH', 'ENETDOWN',
  'EHOSTUNREACH', 'EHOSTDOWN', 'EAI_AGAIN', 'ERR_STREAM_PREMATURE_CLOSE', 'UND_ERR_SOCKET',
]);

/** True for a failure another attempt may cure. Other 4xx answers (403, 404, 400...) never are. */
export function isRetryable(err: unknown): boolean {
  const status = statusOf(err);
  const name = nameOf(err);
  if (status !== undefined && status >= 400 && status < 500) {
    // 408 and 429 are the client errors that mean "later"; S3's RequestTimeout comes as a 400
    // but means the same as 408 (the connection was idle too long), so it is the one exception.
    return status === 408 || status === 429 || name === 'RequestTimeout';
  }
  if (status !== undefined && status >= 500) return true;
  if (RETRYABLE_NAMES.has(name ?? '')) return true;
  for (let e: unknown = err, depth = 0; e !== undefined && e !== null && depth < 4; depth++) {
    const code = (e as { code?: unknown }).code;
    if (typeof code === 'string' && RETRYABLE_ERRNO.has(code)) return true;
    e = (e as { cause?: unknown }).cause;
  }
  // A response that ended early or could not be parsed carries no status: the connection broke.
  const message = err instanceof Error ? err.message : '';
  return /socket hang up|premature close|aborted|ECONNRESET/i.test(message) && name !== 'AbortError';
}

export function statusOf(err: unknown): number | undefined {
  if (typeof err !== 'object' || err === null) return undefined;
  const meta = (err as { $metadata?: { httpStatusCode?: unknown } }).$metadata;
  const status = meta?.httpStatusCode ?? (err as { $response?: { statusCode?: unknown } }).$response?.statusCode;
  return typeof status === 'number' ? status : undefined;
}

export function nameOf(err: unknown): string | undefined {
  if (typeof err !== 'object' || err === null) return undefined;
  const e = err as { name?: unknown; Code?: unknown };
  if (typeof e.Code === 'string') return e.Code;
  return typeof e.name === 'string' ? e.name : undefined;
}

export function describeError(err: unknown): string {
  const name = nameOf(err);
  const status = statusOf(err);
  const message = messageOf(err);
  const parts = [name !== undefined && name !== 'Error' ? name : undefined, status !== undefined ? `HTTP ${status}` : undefined];
  const head = parts.filter((x) => x !== undefined).join(', ');
  // HEAD answers have no body, so the SDK's message is often just "UnknownError" or empty.
  const useful = message !== '' && message !== 'UnknownError' && message !== name;
  return head === '' ? message : useful ? `${head}: ${message}` : head;
}

export function sizeMismatch(url: string, key: string, actual: number, expected: number): PitrError {
  return new PitrError(
    'STORAGE_IO',
    `put of "${key}" to ${url}: body was ${actual} bytes but size said ${expected}`,
    'This is a bug in the caller of put(); the object was not stored.',
  );
}

/** STORAGE_IO for a failed request; permanent unless another attempt could cure it. */
export function ioError(ctx: ErrorContext, op: Op, key: string, err: unknown, attempts: number): PitrError {
  const what = key === '' ? `replica ${ctx.url}` : `"${key}" in ${ctx.url}`;
  const tries = attempts > 1 ? ` (after ${attempts} attempts)` : '';
  const permanent = !(isRetryable(err) || isFirstByteTimeout(err) || nameOf(err) === 'TimeoutError');
  return new PitrError('STORAGE_IO', `cannot ${op} ${what}: ${describeError(err)}${tries}`, hintFor(ctx, err), { cause: err, permanent });
}

export function abortError(url: string, signal: AbortSignal, op: Op, key: string): PitrError {
  return new PitrError('ABORTED', `${op} of "${key}" in ${url} was aborted`, undefined, { cause: signal.reason });
}

/** OBJECT_NOT_FOUND for a missing key; for a range past the end, the same error as FileStorage. */
export function notFoundFor(url: string, err: unknown, key: string, range?: ByteRange): PitrError | undefined {
  const name = nameOf(err);
  if (name === 'NoSuchKey' || (statusOf(err) === 404 && name !== 'NoSuchBucket')) {
    return new PitrError(
      'OBJECT_NOT_FOUND',
      `object "${key}" not found in replica ${url}`,
      'The replica changed while pitr was using it (retention, another agent, manual cleanup) or the ' +
        'replica URL is wrong. Run the command again; if it persists, check the replica URL.',
      { cause: err },
    );
  }
  if (range !== undefined && (name === 'InvalidRange' || statusOf(err) === 416)) {
    return shortObject(url, key, range, undefined, err);
  }
  return undefined;
}

/** PRECONDITION_FAILED for a conditional put the store refused, else undefined. */
export function preconditionFailedFor(url: string, err: unknown, key: string): PitrError | undefined {
  const status = statusOf(err);
  const name = nameOf(err);
  if (status === 412 || status === 409 || name === 'PreconditionFailed' || name === 'ConditionalRequestConflict') {
    return new PitrError('PRECONDITION_FAILED', `conditional write of "${key}" in ${url} refused: ${describeError(err)}`,
      'Another writer changed the object; read it again.', { cause: err });
  }
  return undefined;
}

export function shortObject(url: string, key: string, range: ByteRange, size: number | undefined, cause?: unknown): PitrError {
  return new PitrError(
    'STORAGE_IO',
    `cannot read bytes ${range.start}-${range.end} of "${key}" in ${url}: the object is ${size === undefined ? 'shorter' : `${size} bytes`}`,
    'The object is shorter than its name or index says; it may have been truncated outside pitr.',
    cause === undefined ? undefined : { cause },
  );
}

function hintFor(ctx: ErrorContext, err: unknown): string {
  const { bucket, region, endpoint } = ctx.settings;
  const name = nameOf(err);
  const status = statusOf(err);
  const where = endpoint ?? `S3 (region ${region})`;
  if (name === 'NoSuchBucket') {
    return `The bucket "${bucket}" does not exist at ${where}: create it, or fix the replica URL.`;
  }
  if (name === 'PermanentRedirect' || name === 'AuthorizationHeaderMalformed' || status === 301) {
    return `The bucket "${bucket}" is in another region: add ?region=<its region> to the replica URL (or set AWS_REGION).`;
  }
  if (status === 403 || name === 'AccessDenied' || name === 'InvalidAccessKeyId' || name === 'SignatureDoesNotMatch' ||
    name === 'ExpiredToken' || name === 'CredentialsProviderError') {
    return `Check the AWS credentials pitr runs with (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, AWS_PROFILE, or an ` +
      `instance/task role) and that they may list, read, write and delete in s3://${bucket}.`;
  }
  if (name === 'InvalidStorageClass' || name === 'InvalidArgument' || name === 'KMS.NotFoundException') {
    return 'The store refused the request parameters: check the storage-class, sse and sse-kms-key-id parameters of the replica URL.';
  }
  if (isFirstByteTimeout(err)) {
    return `${where} accepted no connection, or sent no answer, within the first-byte timeout: check that it is reachable ` +
      'from this host, then retry. If it is, but slow to start answering (or the uplink is very slow), raise ' +
      'first-byte-timeout in the replica URL.';
  }
  if (isRetryable(err) || name === 'TimeoutError') {
    return `${where} did not answer in time or refused the connection: check that it is reachable from this host, then retry.`;
  }
  return 'See the cause for the store\'s answer.';
}
