import { randomBytes } from 'node:crypto';
import { lstat, open, rename, rmdir, stat, unlink } from 'node:fs/promises';
import type { FileHandle } from 'node:fs/promises';
import path from 'node:path';
import type { Readable } from 'node:stream';

import { errnoCode, isPitrError, PitrError } from '../../errors.js';
import type { ByteRange, ConditionalStorage, ObjectInfo, PutBody, PutCondition, RequestOptions, StorageClient, VersionedObject } from '../storage-client.js';
import { TEMP_PREFIX, checkRange, keyProblem } from '../storage-keys.js';
import { releaseBody } from '../put-body.js';
import { fsyncDir, writeLocalFileDurably } from '../../util/fs-atomic.js';
import { contentTag, putConditional } from './conditional-put.js';
import { DurableWriter } from './durable-write.js';
import { abortError, io, ioError, notFound, type FileContext, type Op } from './file-errors.js';
import { listFiles } from './file-list.js';

/** Bytes per read of a getStream. */
const STREAM_READ_BYTES = 1024 * 1024;

/**
 * Names starting with this are in-flight puts (or leftovers of a crash during one). list() never
 * reports them and keys may not use them, so a half-written object can never be mistaken for one.
 */
export { TEMP_PREFIX };

export class FileStorage implements StorageClient, ConditionalStorage {
  readonly url: string;
  private readonly root: string;
  // Temp files in directories made durable up to the root, and the bodies written into them.
  private readonly writer: DurableWriter;
  private readonly ctx: FileContext;

  /**
   * localDisk: the directory is on a local disk that pitr owns (the agent's spool). A put of bytes
   * then runs its open, write, close and rename synchronously and only its two fsyncs on the thread
   * pool: each round trip through the pool costs ~0.5-1 ms of latency on a VM where waking threads
   * is expensive, and a spooled commit made eight of them. delete() leaves emptied directories in
   * place (see there). Never for a replica directory: on a network mount a synchronous call could
   * block the agent's event loop for as long as the mount hangs.
   */
  private readonly localDisk: boolean;

  constructor(rootDir: string, url: string, opts: { localDisk?: boolean } = {}) {
    this.localDisk = opts.localDisk ?? false;
    if (!path.isAbsolute(rootDir)) {
      // Relative roots would silently depend on the process's cwd at each call.
      throw new RangeError(`FileStorage root must be an absolute path, got "${rootDir}"`);
    }
    this.root = path.resolve(rootDir);
    this.url = url;
    this.ctx = { url, root: this.root };
    this.writer = new DurableWriter(this.ctx);
  }

  async put(key: string, body: PutBody, opts: RequestOptions & { size?: number } = {}): Promise<void> {
    const target = this.keyPath(key);
    const { signal } = opts;
    if (signal?.aborted) {
      if (!(body instanceof Uint8Array)) releaseBody(body);
      throw this.abortError(signal, 'put', key);
    }
    const dir = path.dirname(target);
    if (this.localDisk && body instanceof Uint8Array && this.writer.isDurable(dir) && (opts.size === undefined || opts.size === body.length)) {
      if (await this.putLocal(key, target, body, signal)) return;
    }

    const { handle, tmp } = await this.writer.openTemp(dir, key);
    let renamed = false;
    try {
      const written = body instanceof Uint8Array
        ? await this.writer.writeBytes(handle, body, key, signal)
        : await this.writer.writeStream(handle, body, key, signal);
      if (opts.size !== undefined && written !== opts.size) {
        throw new PitrError(
          'STORAGE_IO',
          `put of "${key}" to ${this.url}: body was ${written} bytes but size said ${opts.size}`,
          'This is a bug in the caller of put(); the object was not stored.',
        );
      }
      await this.io('write', key, () => handle.sync());
      await this.io('write', key, () => handle.close());
      // Last chance to honour an abort: once renamed, the object exists and the put has happened.
      this.throwIfAborted(signal, 'put', key);
      await this.io('write', key, () => rename(tmp, target));
      renamed = true;
      await this.io('write', key, () => fsyncDir(dir));
    } catch (err) {
      if (!renamed) {
        await handle.close().catch(() => undefined);
        await unlink(tmp).catch(() => undefined);
      }
      throw err;
    }
  }

  /**
   * put() of bytes into a known directory on a local disk (see localDisk): the same steps, only the
   * fsyncs asynchronous (writeLocalFileDurably). False when the directory has gone (something
   * removed it): the caller then takes the general path, which makes it again.
   */
  private async putLocal(key: string, target: string, bytes: Uint8Array, signal: AbortSignal | undefined): Promise<boolean> {
    const dir = path.dirname(target);
    const tmp = path.join(dir, `${TEMP_PREFIX}${randomBytes(8).toString('hex')}`);
    try {
      // exclusive: a random name that already exists means something else writes here; never share it.
      await writeLocalFileDurably(tmp, target, bytes, { exclusive: true, beforeRename: () => this.throwIfAborted(signal, 'put', key) });
      return true;
    } catch (err) {
      if (isPitrError(err)) throw err;
      if (errnoCode(err) === 'ENOENT') {
        this.writer.forget(dir);
        return false;
      }
      throw this.ioError('write', key, err);
    }
  }

  /** The object and its version: a hash of its content (objects written here are small). */
  async getVersioned(key: string, opts: RequestOptions = {}): Promise<VersionedObject> {
    const body = await this.get(key, opts);
    return { body, etag: contentTag(body) };
  }

  /** Conditional put (conditional-put.ts): link() for create-if-absent, a lock file for replace-if-match. */
  async putConditional(key: string, body: Uint8Array, cond: PutCondition, opts: RequestOptions = {}): Promise<{ etag: string }> {
    return putConditional({
      ctx: this.ctx, writer: this.writer, read: (k) => this.get(k, opts),
      key, target: this.keyPath(key), body, cond, signal: opts.signal,
    });
  }

  async get(key: string, opts: RequestOptions & { range?: ByteRange } = {}): Promise<Uint8Array> {
    const { signal, range } = opts;
    if (range !== undefined) checkRange(range, key);
    this.throwIfAborted(signal, 'get', key);
    const { handle, size } = await this.openForRead(key);
    try {
      // Objects are immutable once renamed into place, so the size from the open handle is the
      // whole object: one read call of exactly that size instead of readFile's fstat + reads to EOF.
      if (range === undefined) return await this.readExactly(handle, key, 0, size, signal);
      if (range.start >= size) {
        throw new PitrError(
          'STORAGE_IO',
          `cannot read bytes ${range.start}-${range.end} of "${key}" in ${this.url}: the object is ${size} bytes`,
          'The object is shorter than its name or index says; it may have been truncated outside pitr.',
        );
      }
      // Clamped like an HTTP range, so a caller may ask for "up to N bytes".
      const end = Math.min(range.end, size - 1);
      return await this.readExactly(handle, key, range.start, end - range.start + 1, signal);
    } finally {
      await handle.close().catch(() => undefined);
    }
  }

  /** `length` bytes at `start`, looping over short reads; STORAGE_IO if the file ends first. */
  private async readExactly(handle: FileHandle, key: string, start: number, length: number, signal: AbortSignal | undefined, into?: Buffer): Promise<Uint8Array> {
    const out = into?.subarray(0, length) ?? Buffer.allocUnsafe(length);
    let filled = 0;
    while (filled < length) {
      this.throwIfAborted(signal, 'get', key);
      const { bytesRead } = await this.io('read', key, () => handle.read(out, filled, length - filled, start + filled));
      if (bytesRead === 0) {
        throw new PitrError(
          'STORAGE_IO',
          `"${key}" in ${this.url} ended early: read ${filled} of ${length} bytes at offset ${start}`,
          'The object changed while it was being read; it may have been modified outside pitr.',
        );
      }
      filled += bytesRead;
    }
    return out;
  }

  async getStream(key: string, opts: RequestOptions = {}): Promise<Readable> {
    this.throwIfAborted(opts.signal, 'get', key);
    const { handle } = await this.openForRead(key);
    // The stream owns the handle from here and closes it on end, error or destroy. 1 MiB reads
    // instead of the default 64 KiB: a snapshot is read in a few hundred calls, not thousands.
    return handle.createReadStream({ highWaterMark: STREAM_READ_BYTES, ...(opts.signal ? { signal: opts.signal } : {}) });
  }

  /**
   * The object's bytes in order, in chunks of up to `chunkBytes` read ahead into two buffers that
   * are reused for the whole object: a chunk is valid only until the next one is asked for, which
   * is what put() promises of its body (PutBody). For the agent's spooled snapshots, shipped to
   * every replica: getStream's fresh buffer per read, gigabytes of them, grew the agent's RSS.
   */
  async *readChunks(key: string, opts: RequestOptions & { chunkBytes?: number } = {}): AsyncGenerator<Uint8Array> {
    const { signal } = opts;
    this.throwIfAborted(signal, 'get', key);
    const { handle, size } = await this.openForRead(key);
    let pending: Promise<Uint8Array> | undefined;
    try {
      const chunkBytes = Math.max(1, Math.min(opts.chunkBytes ?? STREAM_READ_BYTES, size));
      const bufs = [Buffer.allocUnsafe(chunkBytes), Buffer.allocUnsafe(chunkBytes)] as const;
      const readInto = (buf: Buffer, at: number): Promise<Uint8Array> =>
        this.readExactly(handle, key, at, Math.min(chunkBytes, size - at), signal, buf);
      let at = 0;
      let next = 0;
      pending = size > 0 ? readInto(bufs[0], 0) : undefined;
      while (pending !== undefined) {
        const chunk = await pending;
        at += chunk.length;
        // The other buffer held the chunk handed out before this one: asking for this one freed it.
        next = 1 - next;
        pending = at < size ? readInto(bufs[next], at) : undefined;
        yield chunk;
      }
    } finally {
      // A consumer that stops early leaves a read in flight: its outcome no longer matters.
      pending?.catch(() => undefined);
      await handle.close().catch(() => undefined);
    }
  }

  async list(prefix: string, opts: RequestOptions = {}): Promise<ObjectInfo[]> {
    return listFiles(this.ctx, prefix, opts.signal);
  }

  async delete(keys: readonly string[], opts: RequestOptions = {}): Promise<void> {
    const paths = keys.map((key) => this.keyPath(key));
    for (let i = 0; i < keys.length; i++) {
      const key = keys[i]!;
      this.throwIfAborted(opts.signal, 'delete', key);
      try {
        await unlink(paths[i]!);
      } catch (err) {
        const code = errnoCode(err);
        // EISDIR/EPERM: the key names a directory of other keys, which is no object to delete.
        if (code === 'ENOENT' || code === 'ENOTDIR') continue;
        if ((code === 'EISDIR' || code === 'EPERM') && (await isDirectory(paths[i]!))) continue;
        throw this.ioError('delete', key, err);
      }
      // The spool (localDisk) keeps its directories: trimmed after every shipped entry, it emptied
      // and removed them each time under sparse writes, and the next commit's put made them again,
      // with an fsync per level, on the path of its lag.
      if (!this.localDisk) await this.pruneEmptyParents(path.dirname(paths[i]!));
    }
  }

  async exists(opts: RequestOptions = {}): Promise<boolean> {
    this.throwIfAborted(opts.signal, 'check', '');
    try {
      const st = await stat(this.root);
      if (st.isDirectory()) return true;
      throw new PitrError(
        'STORAGE_IO',
        `replica ${this.url} is not a directory`,
        'Point the replica at a directory: a replica is the directory `pitr replicate DB REPLICA` writes to.',
      );
    } catch (err) {
      if (isPitrError(err)) throw err;
      const code = errnoCode(err);
      if (code === 'ENOENT' || code === 'ENOTDIR') return false;
      throw this.ioError('check', '', err);
    }
  }

  async close(): Promise<void> {
    // Nothing is held open between calls.
  }

  /** Absolute path of `key`, or a RangeError when the key could escape the root or be ambiguous. */
  private keyPath(key: string): string {
    const problem = keyProblem(key, false);
    if (problem !== undefined) {
      // A bad key is a bug in pitr, not a storage failure: it must not look retryable.
      throw new RangeError(`invalid object key "${key}" for replica ${this.url}: ${problem}`);
    }
    return path.join(this.root, ...key.split('/'));
  }

  private async openForRead(key: string): Promise<{ handle: FileHandle; size: number }> {
    const file = this.keyPath(key);
    let handle: FileHandle;
    try {
      handle = await open(file, 'r');
    } catch (err) {
      const code = errnoCode(err);
      if (code === 'ENOENT' || code === 'ENOTDIR' || code === 'EISDIR') throw this.notFound(key);
      throw this.ioError('read', key, err);
    }
    try {
      const st = await handle.stat();
      // Opening a directory read-only succeeds on POSIX; it is a prefix of other keys, not an object.
      if (!st.isFile()) throw this.notFound(key);
      return { handle, size: st.size };
    } catch (err) {
      await handle.close().catch(() => undefined);
      if (isPitrError(err)) throw err;
      throw this.ioError('read', key, err);
    }
  }

  private async pruneEmptyParents(dir: string): Promise<void> {
    // Best effort: an empty directory left behind costs nothing, and a put may be refilling it.
    for (let d = dir; d !== this.root && isWithin(d, this.root); d = path.dirname(d)) {
      try {
        await rmdir(d);
        this.writer.forget(d);
      } catch {
        return;
      }
    }
  }

  private io<T>(op: Op, key: string, fn: () => Promise<T>, signal?: AbortSignal): Promise<T> {
    return io(this.ctx, op, key, fn, signal);
  }

  private notFound(key: string): PitrError {
    return notFound(this.url, key);
  }

  private ioError(op: Op, key: string, err: unknown): PitrError {
    return ioError(this.ctx, op, key, err);
  }

  private abortError(signal: AbortSignal, op: Op, key: string): PitrError {
    return abortError(this.url, signal, op, key);
  }

  private throwIfAborted(signal: AbortSignal | undefined, op: Op, key: string): void {
    if (signal?.aborted) throw this.abortError(signal, op, key);
  }
}

async function isDirectory(p: string): Promise<boolean> {
  try {
    return (await lstat(p)).isDirectory();
  } catch {
    return false;
  }
}

function isWithin(child: string, parent: string): boolean {
  const rel = path.relative(parent, child);
  return rel === '' || (!rel.startsWith('..') && !path.isAbsolute(rel));
}
