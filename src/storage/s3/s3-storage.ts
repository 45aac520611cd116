import { Readable } from 'node:stream';

import {
  CompleteMultipartUploadCommand,
  DeleteObjectsCommand,
  GetObjectCommand,
  HeadBucketCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  type S3Client,
} from '@aws-sdk/client-s3';
import type { GetObjectCommandOutput, PutObjectCommandInput, ServerSideEncryption, StorageClass } from '@aws-sdk/client-s3';

import { isPitrError, PitrError } from '../../errors.js';
import type { ByteRange, ConditionalStorage, ObjectInfo, PutBody, PutCondition, RequestOptions, StorageClient, VersionedObject } from '../storage-client.js';
import { checkRange, keyProblem, sortByKey } from '../storage-keys.js';
import { bodyChunks, releaseBody } from '../put-body.js';
import { Semaphore } from '../../util/bounded.js';
import { ownClient, type S3ClientLease } from './client-pool.js';
import { PART_QUEUE, partSizeFor, SINGLE_PUT_MAX_BYTES, uploadObject, type SendCommand } from './multipart-upload.js';
import { RequestRunner, type RunOptions } from './request-runner.js';
import { abortError, ioError, nameOf, notFoundFor, preconditionFailedFor, shortObject, sizeMismatch, statusOf, type Op } from './s3-errors.js';
import { resolveSettings, s3OptionsFromUrl, type S3Settings, type S3StorageOptions } from './s3-options.js';
import type { S3ReplicaUrl } from './s3-url.js';

// The s3 backend's public names, importable from here as before the split.
export { isRetryable } from './s3-errors.js';
export { partSizeFor, SINGLE_PUT_MAX_BYTES } from './multipart-upload.js';
export { DEFAULT_S3_LIMITS, s3OptionsFromUrl } from './s3-options.js';
export type { S3Limits, S3Settings, S3StorageOptions } from './s3-options.js';

// S3's limit per DeleteObjects request.
const DELETE_BATCH = 1000;
// S3's limit on a key, in UTF-8 bytes, prefix included.
const MAX_KEY_BYTES = 1024;

/**
 * A replica in an S3 bucket (or any S3-compatible store), under an optional key prefix. Puts are
 * atomic because S3 publishes an object only when its PutObject or CompleteMultipartUpload
 * succeeds. Every request is retried with backoff on transient failures, bounded in time and
 * count, limited in concurrency, and abortable at any point (request-runner.ts). With a client
 * pool (options.clients), storages on one store share one SDK client (client-pool.ts).
 */
export class S3Storage implements StorageClient, ConditionalStorage {
  readonly url: string;
  readonly settings: Readonly<S3Settings>;
  /**
   * The SDK client, exposed for diagnostics and tests; do not send through it directly. It may be
   * shared with other storages (options.clients): middleware added to it applies to them too.
   */
  readonly client: S3Client;
  private readonly root: string;
  private readonly lease: S3ClientLease;
  private readonly runner: RequestRunner;
  private readonly putExtras: Pick<PutObjectCommandInput, 'ServerSideEncryption' | 'SSEKMSKeyId' | 'StorageClass'>;

  constructor(opts: S3StorageOptions) {
    this.settings = Object.freeze(resolveSettings(opts));
    this.root = this.settings.prefix;
    this.url = opts.url ?? `s3://${opts.bucket}${this.root === '' ? '' : `/${this.root}`}`;
    this.putExtras = {
      ...(this.settings.serverSideEncryption !== undefined && {
        ServerSideEncryption: this.settings.serverSideEncryption as ServerSideEncryption,
      }),
      ...(this.settings.sseKmsKeyId !== undefined && { SSEKMSKeyId: this.settings.sseKmsKeyId }),
      ...(this.settings.storageClass !== undefined && { StorageClass: this.settings.storageClass as StorageClass }),
    };
    this.lease = opts.clients !== undefined
      ? opts.clients.acquire(this.settings, opts.credentials)
      : ownClient(this.settings, opts.credentials);
    this.client = this.lease.client;
    const permits = [new Semaphore(this.settings.maxConcurrency), ...(this.lease.storePermits ? [this.lease.storePermits] : [])];
    this.runner = new RequestRunner({ url: this.url, settings: this.settings }, permits);
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
    }, { classify: (err) => notFoundFor(this.url, err, key) });
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
    { classify: (err) => preconditionFailedFor(this.url, err, key) });
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
    }, { classify: (err) => notFoundFor(this.url, err, key, range) });
  }

  async getStream(key: string, opts: RequestOptions = {}): Promise<Readable> {
    const fullKey = this.fullKey(key);
    const { signal } = opts;
    // The permit covers the request only, not the caller's reading: holding it while a caller
    // reads several streams in turn could deadlock a caller that opens more than maxConcurrency.
    const out: GetObjectCommandOutput = await this.request('get', key, signal, (s) =>
      this.client.send(new GetObjectCommand({ Bucket: this.settings.bucket, Key: fullKey }), { abortSignal: s }),
    { classify: (err) => notFoundFor(this.url, err, key) });
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

  /** Give back this storage's share of the client; the client closes with its last share. */
  async close(): Promise<void> {
    this.lease.release();
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

  /** One request through the runner (retries, timeouts, permits, the caller's signal). */
  private request<T>(op: Op, key: string, signal: AbortSignal | undefined, attempt: (signal: AbortSignal) => Promise<T>, opts?: RunOptions): Promise<T> {
    return this.runner.run(op, key, signal, attempt, opts);
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
    return ioError({ url: this.url, settings: this.settings }, op, key, err, attempts);
  }

  private abortError(signal: AbortSignal, op: Op, key: string): PitrError {
    return abortError(this.url, signal, op, key);
  }

  private shortObject(key: string, range: ByteRange, size: number | undefined): PitrError {
    return shortObject(this.url, key, range, size);
  }
}

// Thrown by exists()'s classifier for a missing bucket, caught right there.
const MISSING: unique symbol = Symbol('missing bucket');
