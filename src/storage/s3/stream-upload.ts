import {
  AbortMultipartUploadCommand,
  CompleteMultipartUploadCommand,
  CreateMultipartUploadCommand,
  PutObjectCommand,
  UploadPartCommand,
} from '@aws-sdk/client-s3';
import type { PutObjectCommandInput } from '@aws-sdk/client-s3';

/** Sends one command (with the caller's retries, timeouts and abort); `cleanup` must run even after an abort. */
export type SendCommand = (command: object, opts?: { cleanup?: boolean }) => Promise<unknown>;

export interface StreamUploadArgs {
  send: SendCommand;
  /** Bucket, Key and the object's extra put parameters (encryption, storage class). */
  params: Pick<PutObjectCommandInput, 'Bucket' | 'Key' | 'ServerSideEncryption' | 'SSEKMSKeyId' | 'StorageClass'>;
  body: AsyncIterable<Uint8Array>;
  partSize: number;
  /** Parts uploading at once while the next one fills. */
  queue: number;
}

/**
 * Upload a stream as one object: a single PutObject when it fits in one part, else a multipart
 * upload. Parts are filled by copying the stream's chunks into `queue + 1` buffers that are reused
 * for the whole upload, so memory is those buffers whatever the object size. (lib-storage
 * concatenated every part into a fresh buffer: for a 2 GB snapshot 2 GB of short-lived buffers,
 * which V8 frees only in batches and glibc's heap then keeps; the agent's RSS grew with the
 * object size.) On any failure the multipart upload is aborted, so no object appears.
 */
export async function uploadStream(args: StreamUploadArgs): Promise<void> {
  const { send, params, partSize, queue } = args;
  const free: Buffer[] = [];
  const takeBuffer = (): Buffer => free.pop() ?? Buffer.allocUnsafe(partSize);

  let uploadId: string | undefined;
  const done: { PartNumber: number; ETag: string | undefined }[] = [];
  const running = new Set<Promise<void>>();
  let failed: { err: unknown } | undefined;
  let partNumber = 0;

  const startPart = async (buf: Buffer, length: number): Promise<void> => {
    if (uploadId === undefined) {
      const created = (await send(new CreateMultipartUploadCommand({ ...params }))) as { UploadId?: string };
      if (!created.UploadId) throw new Error('CreateMultipartUpload returned no UploadId');
      uploadId = created.UploadId;
    }
    const number = ++partNumber;
    const id = uploadId;
    const upload = send(
      new UploadPartCommand({ Bucket: params.Bucket, Key: params.Key, UploadId: id, PartNumber: number, Body: buf.subarray(0, length), ContentLength: length }),
    ) as Promise<{ ETag?: string }>;
    const p: Promise<void> = upload.then(
      (out) => {
        running.delete(p);
        done.push({ PartNumber: number, ETag: out.ETag });
        free.push(buf);
      },
      (err: unknown) => {
        running.delete(p);
        failed ??= { err };
      },
    );
    running.add(p);
    while (running.size >= queue) await Promise.race(running);
    if (failed) throw failed.err;
  };

  try {
    let buf = takeBuffer();
    let fill = 0;
    for await (const chunk of args.body) {
      for (let off = 0; off < chunk.length; ) {
        if (fill === partSize) {
          // A full part goes up only once more bytes follow: a body of exactly one part is one PutObject.
          await startPart(buf, fill);
          buf = takeBuffer();
          fill = 0;
        }
        const n = Math.min(partSize - fill, chunk.length - off);
        buf.set(chunk.subarray(off, off + n), fill);
        fill += n;
        off += n;
      }
    }
    if (uploadId === undefined && partNumber === 0) {
      await send(new PutObjectCommand({ ...params, Body: buf.subarray(0, fill), ContentLength: fill }));
      return;
    }
    if (fill > 0) await startPart(buf, fill);
    while (running.size > 0) await Promise.race(running);
    if (failed) throw failed.err;
    done.sort((a, b) => a.PartNumber - b.PartNumber);
    await send(new CompleteMultipartUploadCommand({ Bucket: params.Bucket, Key: params.Key, UploadId: uploadId, MultipartUpload: { Parts: done } }));
  } catch (err) {
    // Parts still uploading finish or fail on their own; the abort removes whatever landed.
    await Promise.allSettled(running);
    if (uploadId !== undefined) {
      await send(new AbortMultipartUploadCommand({ Bucket: params.Bucket, Key: params.Key, UploadId: uploadId }), { cleanup: true }).catch(() => undefined);
    }
    throw err;
  }
}
