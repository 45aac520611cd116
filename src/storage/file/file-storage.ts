import { createHash, randomBytes } from 'node:crypto';
import { link, lstat, mkdir, open, readdir, rename, rmdir, stat, unlink } from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import type { FileHandle } from 'node:fs/promises';
import path from 'node:path';
import type { Readable } from 'node:stream';

import { errnoCode, isPitrError, PitrError } from '../../errors.js';
import type { ByteRange, ConditionalStorage, ObjectInfo, PutBody, PutCondition, RequestOptions, StorageClient, VersionedObject } from '../storage-client.js';
import { TEMP_PREFIX, checkRange, keyProblem, messageOf, sortByKey } from '../storage-keys.js';
import { bodyChunks, releaseBody } from '../put-body.js';
import { fsyncDir, writeLocalFileDurably } from '../../util/fs-atomic.js';

/** Bytes per read of a getStream. */
const STREAM_READ_BYTES = 1024 * 1024;

/**
 * Names starting with this are in-flight puts (or leftovers of a crash during one). list() never
 * reports them and keys may not use them, so a half-written object can never be mistaken for one.
 */
export { TEMP_PREFIX };

// Enough parallel stat() calls to keep the libuv pool busy on a large replica without queueing
// tens of thousands of requests at once.
const STAT_CONCURRENCY = 32;

// A concurrent delete() may prune the directory between our mkdir and our open; retrying a
// couple of times recreates it. More than that means something else is wrong.
const PUT_DIR_ATTEMPTS = 5;

/**
 * A replica in a local (or mounted) directory. Keys map to paths under `rootDir`. A put is
 * written to a temp file next to its final name, fsync'd, renamed into place and the directory
 * fsync'd, so after put() resolves the object survives a power loss and readers never see part
 * of it.
 */
export class FileStorage implements StorageClient, ConditionalStorage {
  readonly url: string;
  private readonly root: string;
  // Directories whose entries we have already made durable up to the root in this process, so a
  // put into a known directory costs one directory fsync, not one per level.
  private readonly durableDirs = new Set<string>();

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
  }

  async put(key: string, body: PutBody, opts: RequestOptions & { size?: number } = {}): Promise<void> {
    const target = this.keyPath(key);
    const { signal } = opts;
    if (signal?.aborted) {
      if (!(body instanceof Uint8Array)) releaseBody(body);
      throw this.abortError(signal, 'put', key);
    }
    const dir = path.dirname(target);
    if (this.localDisk && body instanceof Uint8Array && this.durableDirs.has(dir) && (opts.size === undefined || opts.size === body.length)) {
      if (await this.putLocal(key, target, body, signal)) return;
    }

    const { handle, tmp } = await this.openTemp(dir, key);
    let renamed = false;
    try {
      const written = body instanceof Uint8Array
        ? await this.writeBytes(handle, body, key, signal)
        : await this.writeStream(handle, body, key, signal);
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
        this.durableDirs.delete(dir);
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

  /**
   * Conditional put, atomic on a local POSIX file system. Create-if-absent: the object is written
   * to a temp file and link()ed to its name, which fails with EEXIST when the name exists (link is
   * atomic on local file systems and on NFS). Replace-if-match: under a lock file created with
   * O_EXCL next to the object, the current content's hash is compared and the temp file renamed
   * over it. A lock left by a process that died holding it (a window of a few syscalls) is broken
   * after LOCK_STALE_MS. Every writer of the key must go through this method.
   */
  async putConditional(key: string, body: Uint8Array, cond: PutCondition, opts: RequestOptions = {}): Promise<{ etag: string }> {
    const target = this.keyPath(key);
    const dir = path.dirname(target);
    this.throwIfAborted(opts.signal, 'put', key);
    const { handle, tmp } = await this.openTemp(dir, key);
    let placed = false;
    try {
      await this.writeBytes(handle, body, key, opts.signal);
      await this.io('write', key, () => handle.sync());
      await this.io('write', key, () => handle.close());
      if ('ifNoneMatch' in cond) {
        try {
          await link(tmp, target);
        } catch (err) {
          if (errnoCode(err) === 'EEXIST') throw this.preconditionFailed(key, 'it exists');
          throw this.ioError('write', key, err);
        }
      } else {
        const lock = path.join(dir, `${TEMP_PREFIX}lock-${path.basename(target)}`);
        await this.lockFile(lock, key, opts.signal);
        try {
          let current: Uint8Array;
          try {
            current = await this.get(key, opts);
          } catch (err) {
            if (isPitrError(err, 'OBJECT_NOT_FOUND')) throw this.preconditionFailed(key, 'it does not exist');
            throw err;
          }
          if (contentTag(current) !== cond.ifMatch) throw this.preconditionFailed(key, 'it changed');
          await this.io('write', key, () => rename(tmp, target));
          placed = true;
        } finally {
          await unlink(lock).catch(() => undefined);
        }
      }
      await this.io('write', key, () => fsyncDir(dir));
      return { etag: contentTag(body) };
    } finally {
      await handle.close().catch(() => undefined);
      if (!placed) await unlink(tmp).catch(() => undefined);
    }
  }

  private async lockFile(lock: string, key: string, signal: AbortSignal | undefined): Promise<void> {
    for (;;) {
      this.throwIfAborted(signal, 'put', key);
      try {
        const h = await open(lock, 'wx');
        await h.close();
        return;
      } catch (err) {
        if (errnoCode(err) !== 'EEXIST') throw this.ioError('write', key, err);
      }
      try {
        const st = await stat(lock);
        if (Date.now() - st.mtimeMs > LOCK_STALE_MS) await unlink(lock).catch(() => undefined);
      } catch {
        // Gone meanwhile: try again at once.
        continue;
      }
      await sleep(5 + Math.random() * 20);
    }
  }

  private preconditionFailed(key: string, why: string): PitrError {
    return new PitrError('PRECONDITION_FAILED', `conditional write of "${key}" in ${this.url} refused: ${why}`, 'Another writer changed the object; read it again.');
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
    checkPrefix(prefix, this.url);
    const { signal } = opts;
    this.throwIfAborted(signal, 'list', prefix);

    // Only the directory named by the prefix's complete segments can hold matches; within it only
    // entries starting with the trailing partial name do. Everything below those matches is in.
    const cut = prefix.lastIndexOf('/');
    const dirKey = cut === -1 ? '' : prefix.slice(0, cut);
    const namePrefix = prefix.slice(cut + 1);

    const files: string[] = [];
    const walk = async (dirKeyNow: string, only: string | undefined): Promise<void> => {
      this.throwIfAborted(signal, 'list', prefix);
      const dirPath = dirKeyNow === '' ? this.root : path.join(this.root, ...dirKeyNow.split('/'));
      let entries;
      try {
        entries = await readdir(dirPath, { withFileTypes: true });
      } catch (err) {
        // Nothing to list: no root yet, or a prefix through a file or a directory pruned meanwhile.
        const code = errnoCode(err);
        if (code === 'ENOENT' || code === 'ENOTDIR') return;
        throw this.ioError('list', prefix, err);
      }
      const subdirs: string[] = [];
      for (const entry of entries) {
        if (entry.name.startsWith(TEMP_PREFIX)) continue;
        if (only !== undefined && !entry.name.startsWith(only)) continue;
        const childKey = dirKeyNow === '' ? entry.name : `${dirKeyNow}/${entry.name}`;
        // Symlinks and special files are skipped: pitr never creates them, and following
        // directory links could loop or escape the root.
        if (entry.isFile()) files.push(childKey);
        else if (entry.isDirectory()) subdirs.push(childKey);
      }
      for (const sub of subdirs) await walk(sub, undefined);
    };
    await walk(dirKey, namePrefix);

    const infos = await mapLimit(files, STAT_CONCURRENCY, async (key): Promise<ObjectInfo | undefined> => {
      this.throwIfAborted(signal, 'list', prefix);
      try {
        const st = await stat(path.join(this.root, ...key.split('/')));
        return { key, size: st.size, lastModified: st.mtime };
      } catch (err) {
        // Deleted between readdir and stat: it is simply not there any more.
        if (errnoCode(err) === 'ENOENT') return undefined;
        throw this.ioError('list', prefix, err);
      }
    });
    const found = infos.filter((info): info is ObjectInfo => info !== undefined);
    return sortByKey(found);
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

  private async openTemp(dir: string, key: string): Promise<{ handle: FileHandle; tmp: string }> {
    for (let attempt = 1; ; attempt++) {
      try {
        await this.ensureDurableDir(dir, key);
      } catch (err) {
        // A concurrent delete pruned an emptied parent while mkdir/fsync walked it: try again.
        if (errnoCode((err as { cause?: unknown }).cause) === 'ENOENT' && attempt < PUT_DIR_ATTEMPTS) {
          this.durableDirs.delete(dir);
          continue;
        }
        throw err;
      }
      const tmp = path.join(dir, `${TEMP_PREFIX}${randomBytes(8).toString('hex')}`);
      try {
        // 'wx': a random name that already exists means something else writes here; never share it.
        return { handle: await open(tmp, 'wx'), tmp };
      } catch (err) {
        if (errnoCode(err) === 'ENOENT' && attempt < PUT_DIR_ATTEMPTS) {
          this.durableDirs.delete(dir);
          continue;
        }
        throw this.ioError('write', key, err);
      }
    }
  }

  /**
   * Create `dir` if needed and make its entry durable: after a crash, a renamed-in object must
   * not vanish because the directory holding it was never recorded in its parent.
   */
  private async ensureDurableDir(dir: string, key: string): Promise<void> {
    let created: string | undefined;
    try {
      created = await mkdir(dir, { recursive: true });
    } catch (err) {
      throw this.ioError('write', key, err);
    }
    if (created === undefined && this.durableDirs.has(dir)) return;
    // A directory someone else (or a concurrent put) just created may not be durable yet, so an
    // unknown directory gets its whole chain fsync'd: up to the root, or up to the highest
    // directory mkdir created (which may be the root or above it).
    try {
      for (let d = dir; ; d = path.dirname(d)) {
        if (created === undefined && d === this.root) break;
        await fsyncDir(path.dirname(d));
        if (d === created || path.dirname(d) === d) break;
      }
    } catch (err) {
      throw this.ioError('write', key, err);
    }
    this.durableDirs.add(dir);
  }

  private async writeBytes(handle: FileHandle, bytes: Uint8Array, key: string, signal?: AbortSignal): Promise<number> {
    let offset = 0;
    // Written in slices so an abort is noticed during a large write.
    const slice = 8 * 1024 * 1024;
    while (offset < bytes.length) {
      this.throwIfAborted(signal, 'put', key);
      const n = Math.min(slice, bytes.length - offset);
      const { bytesWritten } = await this.io('write', key, () => handle.write(bytes, offset, n));
      offset += bytesWritten;
    }
    return offset;
  }

  private async writeStream(handle: FileHandle, body: AsyncIterable<Uint8Array>, key: string, signal?: AbortSignal): Promise<number> {
    let written = 0;
    // Each chunk is written before the next is asked for: the body may reuse its buffer (PutBody).
    for await (const bytes of bodyChunks(body, { url: this.url, key, signal, abortError: () => this.abortError(signal!, 'put', key) })) {
      let offset = 0;
      while (offset < bytes.length) {
        const { bytesWritten } = await this.io('write', key, () => handle.write(bytes, offset, bytes.length - offset), signal);
        offset += bytesWritten;
      }
      written += bytes.length;
    }
    this.throwIfAborted(signal, 'put', key);
    return written;
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
        this.durableDirs.delete(d);
      } catch {
        return;
      }
    }
  }

  private async io<T>(op: Op, key: string, fn: () => Promise<T>, signal?: AbortSignal): Promise<T> {
    try {
      return await fn();
    } catch (err) {
      if (isPitrError(err)) throw err;
      if (signal?.aborted) throw this.abortError(signal, op, key);
      throw this.ioError(op, key, err);
    }
  }

  private notFound(key: string): PitrError {
    return new PitrError(
      'OBJECT_NOT_FOUND',
      `object "${key}" not found in replica ${this.url}`,
      'The replica changed while pitr was using it (retention, another agent, manual cleanup) or the ' +
        'replica URL is wrong. Run the command again; if it persists, check the replica URL.',
    );
  }

  private ioError(op: Op, key: string, err: unknown): PitrError {
    const code = errnoCode(err);
    const what = key === '' ? `replica ${this.url}` : `"${key}" in ${this.url}`;
    return new PitrError(
      'STORAGE_IO',
      `cannot ${op} ${what}: ${messageOf(err)}`,
      hintFor(code, this.root),
      // No retry makes a directory writable or a file system read-write.
      { cause: err, permanent: code !== undefined && PERMANENT_ERRNO.has(code) },
    );
  }

  private abortError(signal: AbortSignal, op: Op, key: string): PitrError {
    return new PitrError('ABORTED', `${op} of "${key}" in ${this.url} was aborted`, undefined, { cause: signal.reason });
  }

  private throwIfAborted(signal: AbortSignal | undefined, op: Op, key: string): void {
    if (signal?.aborted) throw this.abortError(signal, op, key);
  }
}

type Op = 'put' | 'get' | 'list' | 'delete' | 'check' | 'read' | 'write';

// A conditional put holds its lock for a few syscalls; one this old was left by a dead process.
const LOCK_STALE_MS = 10_000;

/** The file backend's version tag: a hash of the content (lease and identity objects are small). */
function contentTag(bytes: Uint8Array): string {
  return createHash('sha256').update(bytes).digest('hex').slice(0, 32);
}


function checkPrefix(prefix: string, url: string): void {
  const problem = keyProblem(prefix, true);
  if (problem !== undefined) throw new RangeError(`invalid list prefix "${prefix}" for replica ${url}: ${problem}`);
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

async function mapLimit<T, R>(items: readonly T[], limit: number, fn: (item: T) => Promise<R>): Promise<R[]> {
  const out = new Array<R>(items.length);
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < items.length) {
      const i = next++;
      out[i] = await fn(items[i]!);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return out;
}


/** errno codes of a replica that stays unusable until someone changes it. */
const PERMANENT_ERRNO = new Set(['EACCES', 'EPERM', 'EROFS', 'ENOTDIR']);

function hintFor(code: string | undefined, root: string): string {
  switch (code) {
    case 'EACCES':
    case 'EPERM':
      return `Check that the user running pitr can read and write ${root}.`;
    case 'ENOSPC':
    case 'EDQUOT':
      return `Free space (or raise the quota) on the filesystem holding ${root}.`;
    case 'EROFS':
      return `The filesystem holding ${root} is read-only; remount it read-write or choose another replica.`;
    case 'ENOTDIR':
    case 'EEXIST':
      return `A file sits where pitr needs a directory under ${root}; choose another replica directory.`;
    case 'EMFILE':
    case 'ENFILE':
      return 'Too many open files; raise the open-file limit (ulimit -n) for pitr.';
    default:
      return `Check that ${root} is reachable (mounted) and writable, then retry.`;
  }
}
