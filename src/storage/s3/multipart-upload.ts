import {
  AbortMultipartUploadCommand,
  CompleteMultipartUploadCommand,
  CreateMultipartUploadCommand,
  PutObjectCommand,
  UploadPartCommand,
} from '@aws-sdk/client-s3';
import type { PutObjectCommandInput } from '@aws-sdk/client-s3';

import { Semaphore } from '../../util/bounded.js';

/** Byte bodies up to this size go up in one PutObject; larger ones, and streams longer than a part, as multipart. */
export const SINGLE_PUT_MAX_BYTES = 16 * 1024 * 1024;
/** Parts in flight at once; one more is read meanwhile: three part buffers for a stream. */
export const PART_QUEUE = 2;
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

/** Sends one command (with the caller's retries, timeouts and abort); `cleanup` must run even after an abort. */
export type SendCommand = (command: object, opts?: { cleanup?: boolean }) => Promise<unknown>;

export interface UploadArgs {
  send: SendCommand;
  /** Bucket, Key and the object's extra put parameters (encryption, storage class). */
  params: Pick<PutObjectCommandInput, 'Bucket' | 'Key' | 'ServerSideEncryption' | 'SSEKMSKeyId' | 'StorageClass'>;
  /** Bytes the caller keeps unchanged until the upload settles, or a stream of chunks (each copied before the next is read, so they may share one buffer). */
  body: Uint8Array | AsyncIterable<Uint8Array>;
  partSize: number;
  /** Parts uploading at once while the next one is read. */
  queue: number;
}

/** One part's bytes; `buf` is the reused buffer they live in, if any (stream bodies). */
interface Part {
  data: Uint8Array;
  buf?: Buffer;
  /** No part follows. */
  last: boolean;
}

/**
 * Upload `body` as one object: a single PutObject when it fits in one part, else a multipart
 * upload with at most `queue` parts in flight. A byte body goes up as views of itself. A stream
 * is copied into `queue + 1` part buffers reused for the whole upload, so memory is those buffers
 * whatever the object size (lib-storage concatenated every part into a fresh buffer: for a 2 GB
 * snapshot 2 GB of short-lived buffers, which V8 frees only in batches and glibc's heap then
 * keeps; the agent's RSS grew with the object size). On any failure the multipart upload is
 * aborted, so no object appears.
 */
export async function uploadObject(args: UploadArgs): Promise<void> {
  const { send, params, partSize, queue } = args;
  const free: Buffer[] = [];
  const parts = args.body instanceof Uint8Array ? byteParts(args.body, partSize) : streamParts(args.body, partSize, () => free.pop() ?? Buffer.allocUnsafe(partSize));

  let uploadId: string | undefined;
  const done: { PartNumber: number; ETag: string | undefined }[] = [];
  const running = new Set<Promise<void>>();
  // A permit per part uploading, taken before the next part's bytes are read: at most `queue - 1`
  // parts in flight while one is read, so a stream costs `queue` part buffers.
  const permits = new Semaphore(queue);
  let failed: { err: unknown } | undefined;
  let partNumber = 0;
  const it: AsyncIterator<Part> = parts;
  let finished = false;
  try {
    for (;;) {
      const release = await permits.acquire();
      const failure = failed as { err: unknown } | undefined;
      if (failure) {
        release();
        throw failure.err;
      }
      const next = await it.next();
      if (next.done) {
        release();
        break;
      }
      const part = next.value;
      if (uploadId === undefined) {
        if (part.last) {
          release();
          await send(new PutObjectCommand({ ...params, Body: part.data, ContentLength: part.data.length }));
          finished = true;
          return;
        }
        const created = (await send(new CreateMultipartUploadCommand({ ...params }))) as { UploadId?: string };
        if (!created.UploadId) throw new Error('CreateMultipartUpload returned no UploadId');
        uploadId = created.UploadId;
      }
      const number = ++partNumber;
      const upload = send(
        new UploadPartCommand({ Bucket: params.Bucket, Key: params.Key, UploadId: uploadId, PartNumber: number, Body: part.data, ContentLength: part.data.length }),
      ) as Promise<{ ETag?: string }>;
      const p: Promise<void> = upload.then(
        (out) => {
          done.push({ PartNumber: number, ETag: out.ETag });
          // Back in the pool before the permit is: the next part read reuses this buffer.
          if (part.buf) free.push(part.buf);
        },
        (err: unknown) => {
          failed ??= { err };
        },
      ).finally(() => {
        running.delete(p);
        release();
      });
      running.add(p);
    }
    await Promise.all(running);
    const failure = failed as { err: unknown } | undefined;
    if (failure) throw failure.err;
    finished = true;
    done.sort((a, b) => a.PartNumber - b.PartNumber);
    await send(new CompleteMultipartUploadCommand({ Bucket: params.Bucket, Key: params.Key, UploadId: uploadId, MultipartUpload: { Parts: done } }));
  } catch (err) {
    // Parts still uploading finish or fail on their own; the abort removes whatever landed.
    await Promise.allSettled(running);
    if (uploadId !== undefined) {
      await send(new AbortMultipartUploadCommand({ Bucket: params.Bucket, Key: params.Key, UploadId: uploadId }), { cleanup: true }).catch(() => undefined);
    }
    throw err;
  } finally {
    // A body left unread (a failure) is let go, as a for-await loop would.
    if (!finished) await it.return?.(undefined).catch(() => undefined);
  }
}

async function* byteParts(body: Uint8Array, partSize: number): AsyncGenerator<Part> {
  for (let at = 0; ; at += partSize) {
    const last = at + partSize >= body.length;
    yield { data: body.subarray(at, Math.min(at + partSize, body.length)), last };
    if (last) return;
  }
}

/**
 * The stream's bytes cut into parts, each copied into a buffer from `take`. A full part is handed
 * out only once more bytes follow, so the one marked last is known to be last (a stream of exactly
 * one part stays one PutObject).
 */
async function* streamParts(body: AsyncIterable<Uint8Array>, partSize: number, take: () => Buffer): AsyncGenerator<Part> {
  let buf = take();
  let fill = 0;
  for await (const chunk of body) {
    for (let off = 0; off < chunk.length; ) {
      if (fill === partSize) {
        yield { data: buf, buf, last: false };
        buf = take();
        fill = 0;
      }
      const n = Math.min(partSize - fill, chunk.length - off);
      buf.set(chunk.subarray(off, off + n), fill);
      fill += n;
      off += n;
    }
  }
  yield { data: buf.subarray(0, fill), buf, last: true };
}
