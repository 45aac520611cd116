import { Readable } from 'node:stream';

import {
  CompleteMultipartUploadCommand,
  DeleteObjectsCommand,
  GetObjectCommand,
  HeadBucketCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  S3Client,
} from '@aws-sdk/client-s3';
import type {
  GetObjectCommandOutput,
  PutObjectCommandInput,
  S3ClientConfig,
  ServerSideEncryption,
  StorageClass,
} from '@aws-sdk/client-s3';
import { uploadObject, type SendCommand } from './multipart-upload.js';
import { isFirstByteTimeout, watchedAgents, withFirstByteTimeout } from './first-byte-timeout.js';

import { isPitrError, PitrError } from '../../errors.js';
import type { S3ReplicaUrl } from '../open-storage.js';
import type { ByteRange, ConditionalStorage, ObjectInfo, PutBody, PutCondition, RequestOptions, StorageClient, VersionedObject } from '../storage-client.js';
import { checkRange, keyProblem, messageOf, sortByKey } from '../storage-keys.js';
import { bodyChunks, releaseBody } from '../put-body.js';
import { parseDuration } from '../../util/duration.js';

/** Byte bodies up to this size go up in one PutObject; larger ones, and streams longer than a part, as multipart. */
export const SINGLE_PUT_MAX_BYTES = 16 * 1024 * 1024;
// Parts in flight at once; one more is read meanwhile (multipart-upload.ts): three part buffers for a stream.
const PART_QUEUE = 2;
// S3's smallest part (but the last) and most parts per upload.
const MIN_PART_SIZE = 5 * 1024 * 1024;
const MAX_PARTS = 10_000;
// A stream of unknown length gets 8 MiB parts: objects up to 78 GiB.
const UNKNOWN_SIZE_PART_SIZE = 8 * 1024 * 1024;

/** The smallest part size (least memory) that fits `size` bytes into S3's 10,000 parts. */
export function partSizeFor(size: number | undefined): number {
  if (size === undefined) return UNKNOWN_SIZE_PART_SIZE;
  return Math.max(MIN_PART_SIZE, Math.ceil(size / MAX_PARTS / (1024 * 1024)) * 1024 * 1024);
}
// S3's limit per DeleteObjects request.
const DELETE_BATCH = 1000;
// S3's limit on a key, in UTF-8 bytes, prefix included.
const MAX_KEY_BYTES = 1024;

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
  /** Requests in flight at once on this client (default 8). */
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

/**
 * A replica in an S3 bucket (or any S3-compatible store), under an optional key prefix. Puts are
 * atomic because S3 publishes an object only when its PutObject or CompleteMultipartUpload
 * succeeds. Every request is retried with backoff on transient failures, bounded in time and
 * count, limited in concurrency, and abortable at any point.
 */
export class S3Storage implements StorageClient, ConditionalStorage {
  readonly url: string;
  readonly settings: Readonly<S3Settings>;
  /** The SDK client, exposed for diagnostics and tests; do not send through it directly. */
  readonly client: S3Client;
  private readonly root: string;
  private readonly permits: Semaphore;
  private readonly putExtras: Pick<PutObjectCommandInput, 'ServerSideEncryption' | 'SSEKMSKeyId' | 'StorageClass'>;

  constructor(opts: S3StorageOptions) {
    const env = opts.env ?? process.env;
    const prefix = (opts.prefix ?? '').replace(/^\/+|\/+$/g, '');
    const endpoint = nonEmpty(opts.endpoint) ?? nonEmpty(env['AWS_ENDPOINT_URL_S3']) ?? nonEmpty(env['AWS_ENDPOINT_URL']);
    const region = nonEmpty(opts.region) ?? nonEmpty(env['AWS_REGION']) ?? nonEmpty(env['AWS_DEFAULT_REGION']) ?? 'us-east-1';
    const limits = resolveLimits(opts);
    this.settings = Object.freeze({
      ...limits,
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
    });
    this.root = prefix;
    this.url = opts.url ?? `s3://${opts.bucket}${prefix === '' ? '' : `/${prefix}`}`;
    this.permits = new Semaphore(limits.maxConcurrency);
    this.putExtras = {
      ...(this.settings.serverSideEncryption !== undefined && {
        ServerSideEncryption: this.settings.serverSideEncryption as ServerSideEncryption,
      }),
      ...(this.settings.sseKmsKeyId !== undefined && { SSEKMSKeyId: this.settings.sseKmsKeyId }),
      ...(this.settings.storageClass !== undefined && { StorageClass: this.settings.storageClass as StorageClass }),
    };

    const config: S3ClientConfig = {
      region,
      forcePathStyle: this.settings.forcePathStyle,
      // Retries are ours (see request()): the SDK's own would sleep through an abort.
      maxAttempts: 1,
      requestHandler: {
        // Our agents: they time the waits for the store (connecting, and from the request sent to
        // the answer's first byte), which the SDK's own timeouts cannot tell apart from a transfer.
        ...watchedAgents({ ms: limits.firstByteTimeoutMs, maxMs: limits.requestTimeoutMs }),
        // Socket inactivity: a request body or an answer that stops moving mid-transfer.
        socketTimeout: limits.requestTimeoutMs,
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
    if (opts.credentials !== undefined) config.credentials = { ...opts.credentials };
    this.client = new S3Client(config);
  }

  /** A client for a parsed s3:// replica URL; `overrides` win over the URL (tests, the CLI). */
  static fromReplicaUrl(parsed: S3ReplicaUrl, overrides: Partial<S3StorageOptions> = {}): S3Storage {
    return new S3Storage({ ...s3OptionsFromUrl(parsed), ...overrides });
  }

  async put(key: string, body: PutBody, opts: RequestOptions & { size?: number } = {}): Promise<void> {
    const fullKey = this.fullKey(key);
    const { signal } = opts;
    if (signal?.aborted) {
      if (!(body instanceof Uint8Array)) releaseBody(body);
      throw this.abortError(signal, 'put', key);
    }
    if (body instanceof Uint8Array) {
      if (opts.size !== undefined && opts.size !== body.length) throw sizeMismatch(this.url, key, body.length, opts.size);
      if (body.length <= SINGLE_PUT_MAX_BYTES) {
        await this.request('put', key, signal, (s) =>
          this.client.send(new PutObjectCommand({
            Bucket: this.settings.bucket,
            Key: fullKey,
            Body: body,
            ContentLength: body.length,
            ...this.putExtras,
          }), { abortSignal: s }));
        return;
      }
      await this.multipart(key, fullKey, body, body.length, signal);
      return;
    }
    await this.multipart(key, fullKey, this.meter(body, key, opts.size, signal), opts.size, signal);
  }

  /** The object and its ETag. */
  async getVersioned(key: string, opts: RequestOptions = {}): Promise<VersionedObject> {
    const fullKey = this.fullKey(key);
    return this.request('get', key, opts.signal, async (s) => {
      const out = await this.client.send(new GetObjectCommand({ Bucket: this.settings.bucket, Key: fullKey }), { abortSignal: s });
      const body = out.Body === undefined ? new Uint8Array(0) : await out.Body.transformToByteArray();
      return { body, etag: out.ETag ?? '' };
    }, { classify: (err) => this.notFoundFor(err, key) });
  }

  /**
   * PutObject with If-None-Match: * or If-Match: ETag (S3 since 2024, and stores that follow it).
   * HTTP 412, and 409 ConditionalRequestConflict (a concurrent conditional write won), become
   * PRECONDITION_FAILED. Stores that ignore the headers (s3rver) just store the object: callers
   * that need the guarantee re-read (see replicate/lease.ts). A retried attempt whose first try
   * was in fact stored also answers 412: the caller's re-read tells that case apart.
   */
  async putConditional(key: string, body: Uint8Array, cond: PutCondition, opts: RequestOptions = {}): Promise<{ etag: string }> {
    const fullKey = this.fullKey(key);
    const out = await this.request('put', key, opts.signal, (s) =>
      this.client.send(new PutObjectCommand({
        Bucket: this.settings.bucket,
        Key: fullKey,
        Body: body,
        ContentLength: body.length,
        ...('ifNoneMatch' in cond ? { IfNoneMatch: '*' } : { IfMatch: cond.ifMatch }),
        ...this.putExtras,
      }), { abortSignal: s }),
    {
      classify: (err) => {
        const status = statusOf(err);
        const name = nameOf(err);
        if (status === 412 || status === 409 || name === 'PreconditionFailed' || name === 'ConditionalRequestConflict') {
          return new PitrError('PRECONDITION_FAILED', `conditional write of "${key}" in ${this.url} refused: ${describeError(err)}`,
            'Another writer changed the object; read it again.', { cause: err });
        }
        return undefined;
      },
    });
    return { etag: out.ETag ?? '' };
  }

  async get(key: string, opts: RequestOptions & { range?: ByteRange } = {}): Promise<Uint8Array> {
    const fullKey = this.fullKey(key);
    const { signal, range } = opts;
    if (range !== undefined) checkRange(range, key);
    return this.request('get', key, signal, async (s) => {
      const out = await this.client.send(new GetObjectCommand({
        Bucket: this.settings.bucket,
        Key: fullKey,
        ...(range !== undefined && { Range: `bytes=${range.start}-${range.end}` }),
      }), { abortSignal: s });
      // Read inside the attempt, so a connection lost mid-body is retried like any other failure.
      const bytes = out.Body === undefined ? new Uint8Array(0) : await out.Body.transformToByteArray();
      return range === undefined ? bytes : this.sliceRange(bytes, out.ContentRange, range, key);
    }, { classify: (err) => this.notFoundFor(err, key, range) });
  }

  async getStream(key: string, opts: RequestOptions = {}): Promise<Readable> {
    const fullKey = this.fullKey(key);
    const { signal } = opts;
    // The permit covers the request only, not the caller's reading: holding it while a caller
    // reads several streams in turn could deadlock a caller that opens more than maxConcurrency.
    const out: GetObjectCommandOutput = await this.request('get', key, signal, (s) =>
      this.client.send(new GetObjectCommand({ Bucket: this.settings.bucket, Key: fullKey }), { abortSignal: s }),
    { classify: (err) => this.notFoundFor(err, key) });
    const stream = out.Body instanceof Readable ? out.Body : Readable.from([]);
    if (signal !== undefined) {
      const onAbort = (): void => {
        stream.destroy(this.abortError(signal, 'get', key));
      };
      if (signal.aborted) onAbort();
      else {
        signal.addEventListener('abort', onAbort, { once: true });
        // One long-lived signal may serve thousands of reads: do not leave a listener per stream.
        stream.once('close', () => signal.removeEventListener('abort', onAbort));
      }
    }
    return stream;
  }

  async list(prefix: string, opts: RequestOptions = {}): Promise<ObjectInfo[]> {
    const problem = keyProblem(prefix, true);
    if (problem !== undefined) throw new RangeError(`invalid list prefix "${prefix}" for replica ${this.url}: ${problem}`);
    const { signal } = opts;
    const rootSlash = this.root === '' ? '' : `${this.root}/`;
    const found: ObjectInfo[] = [];
    let token: string | undefined;
    do {
      // Each page is its own request: a failure late in a long listing retries one page, not all.
      const page = await this.request('list', prefix, signal, (s) =>
        this.client.send(new ListObjectsV2Command({
          Bucket: this.settings.bucket,
          Prefix: rootSlash + prefix,
          ...(token !== undefined && { ContinuationToken: token }),
        }), { abortSignal: s }));
      for (const obj of page.Contents ?? []) {
        if (obj.Key === undefined || !obj.Key.startsWith(rootSlash)) continue;
        found.push({
          key: obj.Key.slice(rootSlash.length),
          size: obj.Size ?? 0,
          lastModified: obj.LastModified ?? new Date(0),
        });
      }
      const next = page.IsTruncated === true ? page.NextContinuationToken : undefined;
      if (page.IsTruncated === true && next === undefined) {
        // Stopping here would silently return part of the replica, and a restore plan built on
        // part of a replica can pick the wrong snapshot.
        throw new PitrError(
          'STORAGE_IO',
          `cannot list "${prefix}" in ${this.url}: the store said the listing continues but gave no continuation token`,
          'The S3-compatible store does not implement ListObjectsV2 pagination correctly; use another store or report it to its vendor.',
        );
      }
      token = next;
    } while (token !== undefined);
    // S3 already orders by UTF-8 bytes; some compatible stores order differently, and the
    // contract is byte order.
    return sortByKey(found);
  }

  async delete(keys: readonly string[], opts: RequestOptions = {}): Promise<void> {
    const fullKeys = [...new Set(keys.map((key) => this.fullKey(key)))];
    const { signal } = opts;
    if (signal?.aborted) throw this.abortError(signal, 'delete', keys[0] ?? '');
    for (let i = 0; i < fullKeys.length; i += DELETE_BATCH) {
      const batch = fullKeys.slice(i, i + DELETE_BATCH);
      const label = this.keyOf(batch[0]!);
      const out = await this.request('delete', label, signal, (s) =>
        this.client.send(new DeleteObjectsCommand({
          Bucket: this.settings.bucket,
          // Quiet: the answer lists only failures, not 1,000 successes.
          Delete: { Objects: batch.map((Key) => ({ Key })), Quiet: true },
        }), { abortSignal: s }),
      // Up to 1,000 deletions before the store answers.
      { slowAnswer: true });
      const failed = (out.Errors ?? []).filter((e) => e.Code !== 'NoSuchKey');
      if (failed.length > 0) {
        const first = failed[0]!;
        throw new PitrError(
          'STORAGE_IO',
          `cannot delete ${failed.length} of ${batch.length} objects in ${this.url}, e.g. "${this.keyOf(first.Key ?? '')}": ${first.Code ?? 'error'}: ${first.Message ?? ''}`.trim(),
          first.Code === 'AccessDenied'
            ? `Allow s3:DeleteObject on the bucket ${this.settings.bucket} for the credentials pitr uses.`
            : 'The objects not deleted are still there; deleting them again later is safe.',
        );
      }
    }
  }

  async exists(opts: RequestOptions = {}): Promise<boolean> {
    // HeadBucket only: a prefix is no thing of its own in S3, so an existing bucket is an
    // existing (possibly empty) replica.
    try {
      await this.request('check', '', opts.signal, (s) =>
        this.client.send(new HeadBucketCommand({ Bucket: this.settings.bucket }), { abortSignal: s }),
      { classify: (err) => (statusOf(err) === 404 || nameOf(err) === 'NoSuchBucket' ? MISSING : undefined) });
      return true;
    } catch (err) {
      if (err === MISSING) return false;
      throw err;
    }
  }

  async close(): Promise<void> {
    this.client.destroy();
  }

  /**
   * Multipart (or, for a body that fits in one part, single) upload (multipart-upload.ts: views of
   * a byte body, reused part buffers for a stream), every request through request(): retries,
   * timeouts, concurrency limit and the caller's signal. The AbortMultipartUpload after a failure runs even when the signal has
   * fired, and its own failure must not replace the error that caused it; parts it fails to
   * remove are only a storage cost (a bucket lifecycle rule for incomplete uploads reclaims them).
   */
  private async multipart(key: string, fullKey: string, body: Uint8Array | AsyncIterable<Uint8Array>, size: number | undefined, signal: AbortSignal | undefined): Promise<void> {
    const send: SendCommand = (command, o) =>
      this.request('put', key, o?.cleanup ? undefined : signal, (s) =>
        this.client.send(command as PutObjectCommand, { abortSignal: s }),
      // S3 answers a completion at once and works on behind whitespace it sends to keep the
      // connection up; compatible stores may assemble the parts before they send a byte.
      { slowAnswer: command instanceof CompleteMultipartUploadCommand });
    try {
      await uploadObject({
        send,
        params: { Bucket: this.settings.bucket, Key: fullKey, ...this.putExtras },
        body,
        partSize: partSizeFor(size),
        queue: PART_QUEUE,
      });
    } catch (err) {
      if (signal?.aborted) throw this.abortError(signal, 'put', key);
      if (isPitrError(err)) throw err;
      throw this.ioError('put', key, err, 1);
    }
  }

  /**
   * The body as the uploader should read it: bytes only, counted against `size`, and stopped by
   * the caller's signal even when the source stalls.
   */
  private async *meter(body: AsyncIterable<Uint8Array>, key: string, size: number | undefined, signal: AbortSignal | undefined): AsyncGenerator<Uint8Array> {
    let total = 0;
    for await (const bytes of bodyChunks(body, { url: this.url, key, signal, abortError: () => this.abortError(signal!, 'put', key) })) {
      total += bytes.length;
      yield bytes;
    }
    // Thrown before the last part is sent, so a short or long body never becomes an object.
    if (size !== undefined && total !== size) throw sizeMismatch(this.url, key, total, size);
  }

  /**
   * Run one S3 request with a permit, per-attempt timeouts and retries. `attempt` gets the signal
   * to pass to the SDK. `classify` may turn an error into a final answer (a PitrError to throw, or
   * any value to rethrow as is) before retry logic looks at it. `slowAnswer` marks a request the
   * store may work on for long before it answers: it waits requestTimeoutMs for its first byte.
   *
   * Timeouts, per attempt: firstByteTimeoutMs while the store keeps the request waiting (see
   * first-byte-timeout.ts), requestTimeoutMs of inactivity while a body is in transfer (the SDK's
   * socket timeout). No deadline on the whole attempt: a slow transfer that keeps moving (a part
   * on a thin uplink, a large get()) must not be cut and retried forever.
   */
  private async request<T>(
    op: Op,
    key: string,
    signal: AbortSignal | undefined,
    attempt: (signal: AbortSignal) => Promise<T>,
    opts: { classify?: (err: unknown) => unknown; slowAnswer?: boolean } = {},
  ): Promise<T> {
    const { maxAttempts, firstByteTimeoutMs, requestTimeoutMs } = this.settings;
    const firstByte = { ms: opts.slowAnswer === true ? Math.max(firstByteTimeoutMs, requestTimeoutMs) : firstByteTimeoutMs, maxMs: requestTimeoutMs };
    for (let n = 1; ; n++) {
      if (signal?.aborted) throw this.abortError(signal, op, key);
      const release = await this.permits.acquire(signal, () => this.abortError(signal!, op, key));
      const ac = new AbortController();
      const onAbort = (): void => ac.abort(signal!.reason);
      signal?.addEventListener('abort', onAbort, { once: true });
      let timedOut = false;
      try {
        return await withFirstByteTimeout(firstByte, () => attempt(ac.signal));
      } catch (err) {
        if (signal?.aborted) throw this.abortError(signal, op, key);
        const verdict = opts.classify?.(err);
        if (verdict !== undefined) throw verdict;
        if (isPitrError(err)) throw err;
        timedOut = isFirstByteTimeout(err);
        if (!(timedOut || isRetryable(err)) || n >= maxAttempts) throw this.ioError(op, key, err, n);
      } finally {
        signal?.removeEventListener('abort', onAbort);
        release();
      }
      // The timeout was the wait already: the retry goes out at once, on a fresh connection (the
      // dead one and its idle peers are closed), so a store that is back answers it straight away.
      if (!timedOut) await this.backoff(n, signal, op, key);
    }
  }

  /** Sleep before retry `n + 1`: full jitter over an exponentially growing ceiling; abortable. */
  private async backoff(n: number, signal: AbortSignal | undefined, op: Op, key: string): Promise<void> {
    const { baseDelayMs, maxDelayMs } = this.settings;
    const ceiling = Math.min(maxDelayMs, baseDelayMs * 2 ** (n - 1));
    // Full jitter: many agents failing at once (a store outage) must not retry in lockstep.
    const delay = Math.random() * ceiling;
    await new Promise<void>((resolve, reject) => {
      const onAbort = (): void => {
        clearTimeout(timer);
        reject(this.abortError(signal!, op, key));
      };
      const timer = setTimeout(() => {
        signal?.removeEventListener('abort', onAbort);
        resolve();
      }, delay);
      signal?.addEventListener('abort', onAbort, { once: true });
    });
  }

  /** The bytes of `range` from a response that may cover more than was asked for. */
  private sliceRange(bytes: Uint8Array, contentRange: string | undefined, range: ByteRange, key: string): Uint8Array {
    // Some stores answer a range with the whole object (200, no Content-Range) or a wider range
    // (s3rver turns "bytes=0-0" into the whole object); slicing by what the answer says it
    // covers gives the caller exactly its range either way.
    let from = 0;
    let total: number | undefined;
    if (contentRange !== undefined) {
      const m = /^bytes (\d+)-(\d+)\/(\d+|\*)$/.exec(contentRange.trim());
      if (m) {
        from = Number(m[1]);
        total = m[3] === '*' ? undefined : Number(m[3]);
      }
    } else {
      total = bytes.length;
    }
    if (from > range.start) {
      throw new PitrError(
        'STORAGE_IO',
        `cannot read bytes ${range.start}-${range.end} of "${key}" in ${this.url}: the store answered with bytes from ${from}`,
        'The S3-compatible store does not implement range requests correctly; use another store or report it to its vendor.',
      );
    }
    const start = range.start - from;
    if (start >= bytes.length) throw this.shortObject(key, range, total ?? from + bytes.length);
    return bytes.subarray(start, Math.min(bytes.length, start + (range.end - range.start + 1)));
  }

  private shortObject(key: string, range: ByteRange, size: number | undefined, cause?: unknown): PitrError {
    return new PitrError(
      'STORAGE_IO',
      `cannot read bytes ${range.start}-${range.end} of "${key}" in ${this.url}: the object is ${size === undefined ? 'shorter' : `${size} bytes`}`,
      'The object is shorter than its name or index says; it may have been truncated outside pitr.',
      cause === undefined ? undefined : { cause },
    );
  }

  /** OBJECT_NOT_FOUND for a missing key; for a range past the end, the same error as FileStorage. */
  private notFoundFor(err: unknown, key: string, range?: ByteRange): PitrError | undefined {
    const name = nameOf(err);
    if (name === 'NoSuchKey' || (statusOf(err) === 404 && name !== 'NoSuchBucket')) {
      return new PitrError(
        'OBJECT_NOT_FOUND',
        `object "${key}" not found in replica ${this.url}`,
        'The replica changed while pitr was using it (retention, another agent, manual cleanup) or the ' +
          'replica URL is wrong. Run the command again; if it persists, check the replica URL.',
        { cause: err },
      );
    }
    if (range !== undefined && (name === 'InvalidRange' || statusOf(err) === 416)) {
      return this.shortObject(key, range, undefined, err);
    }
    return undefined;
  }

  /** Bucket key of a replica key, or a RangeError for a key that is not portable across backends. */
  private fullKey(key: string): string {
    const problem = keyProblem(key, false);
    if (problem !== undefined) {
      // A bad key is a bug in pitr, not a storage failure: it must not look retryable.
      throw new RangeError(`invalid object key "${key}" for replica ${this.url}: ${problem}`);
    }
    const full = this.root === '' ? key : `${this.root}/${key}`;
    if (Buffer.byteLength(full, 'utf8') > MAX_KEY_BYTES) {
      throw new RangeError(`invalid object key "${key}" for replica ${this.url}: with the prefix it exceeds S3's ${MAX_KEY_BYTES}-byte limit`);
    }
    return full;
  }

  private keyOf(fullKey: string): string {
    return this.root === '' ? fullKey : fullKey.slice(this.root.length + 1);
  }

  private ioError(op: Op, key: string, err: unknown, attempts: number): PitrError {
    const what = key === '' ? `replica ${this.url}` : `"${key}" in ${this.url}`;
    const tries = attempts > 1 ? ` (after ${attempts} attempts)` : '';
    const permanent = !(isRetryable(err) || isFirstByteTimeout(err) || nameOf(err) === 'TimeoutError');
    return new PitrError('STORAGE_IO', `cannot ${op} ${what}: ${describeError(err)}${tries}`, this.hintFor(err), { cause: err, permanent });
  }

  private hintFor(err: unknown): string {
    const name = nameOf(err);
    const status = statusOf(err);
    const where = this.settings.endpoint ?? `S3 (region ${this.settings.region})`;
    if (name === 'NoSuchBucket') {
      return `The bucket "${this.settings.bucket}" does not exist at ${where}: create it, or fix the replica URL.`;
    }
    if (name === 'PermanentRedirect' || name === 'AuthorizationHeaderMalformed' || status === 301) {
      return `The bucket "${this.settings.bucket}" is in another region: add ?region=<its region> to the replica URL (or set AWS_REGION).`;
    }
    if (status === 403 || name === 'AccessDenied' || name === 'InvalidAccessKeyId' || name === 'SignatureDoesNotMatch' ||
      name === 'ExpiredToken' || name === 'CredentialsProviderError') {
      return `Check the AWS credentials pitr runs with (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, AWS_PROFILE, or an ` +
        `instance/task role) and that they may list, read, write and delete in s3://${this.settings.bucket}.`;
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

  private abortError(signal: AbortSignal, op: Op, key: string): PitrError {
    return new PitrError('ABORTED', `${op} of "${key}" in ${this.url} was aborted`, undefined, { cause: signal.reason });
  }
}

type Op = 'put' | 'get' | 'list' | 'delete' | 'check';

// Thrown by exists()'s classifier for a missing bucket, caught right there.
const MISSING: unique symbol = Symbol('missing bucket');

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

function statusOf(err: unknown): number | undefined {
  if (typeof err !== 'object' || err === null) return undefined;
  const meta = (err as { $metadata?: { httpStatusCode?: unknown } }).$metadata;
  const status = meta?.httpStatusCode ?? (err as { $response?: { statusCode?: unknown } }).$response?.statusCode;
  return typeof status === 'number' ? status : undefined;
}

function nameOf(err: unknown): string | undefined {
  if (typeof err !== 'object' || err === null) return undefined;
  const e = err as { name?: unknown; Code?: unknown };
  if (typeof e.Code === 'string') return e.Code;
  return typeof e.name === 'string' ? e.name : undefined;
}

function describeError(err: unknown): string {
  const name = nameOf(err);
  const status = statusOf(err);
  const message = messageOf(err);
  const parts = [name !== undefined && name !== 'Error' ? name : undefined, status !== undefined ? `HTTP ${status}` : undefined];
  const head = parts.filter((x) => x !== undefined).join(', ');
  // HEAD answers have no body, so the SDK's message is often just "UnknownError" or empty.
  const useful = message !== '' && message !== 'UnknownError' && message !== name;
  return head === '' ? message : useful ? `${head}: ${message}` : head;
}

function sizeMismatch(url: string, key: string, actual: number, expected: number): PitrError {
  return new PitrError(
    'STORAGE_IO',
    `put of "${key}" to ${url}: body was ${actual} bytes but size said ${expected}`,
    'This is a bug in the caller of put(); the object was not stored.',
  );
}





function nonEmpty(v: string | undefined): string | undefined {
  return v === undefined || v === '' ? undefined : v;
}


/** Counting semaphore whose waiters can give up when their signal aborts. */
class Semaphore {
  private free: number;
  private readonly waiters: Array<() => void> = [];

  constructor(size: number) {
    this.free = size;
  }

  /** Resolves with a release function (safe to call twice); rejects with `onAbort()` if aborted first. */
  async acquire(signal: AbortSignal | undefined, onAbort: () => Error): Promise<() => void> {
    if (signal?.aborted) throw onAbort();
    if (this.free > 0) {
      this.free--;
      return this.releaser();
    }
    return new Promise((resolve, reject) => {
      const grant = (): void => {
        signal?.removeEventListener('abort', abort);
        resolve(this.releaser());
      };
      const abort = (): void => {
        const i = this.waiters.indexOf(grant);
        if (i !== -1) this.waiters.splice(i, 1);
        reject(onAbort());
      };
      this.waiters.push(grant);
      signal?.addEventListener('abort', abort, { once: true });
    });
  }

  private releaser(): () => void {
    let done = false;
    return () => {
      if (done) return;
      done = true;
      // Hand the permit straight to the next waiter, so a stream of new arrivals cannot starve it.
      const next = this.waiters.shift();
      if (next !== undefined) next();
      else this.free++;
    };
  }
}
