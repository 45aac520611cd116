import { createHash } from 'node:crypto';
import { link, open, rename, stat, unlink } from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import path from 'node:path';

import { errnoCode, isPitrError, PitrError } from '../../errors.js';
import type { PutCondition } from '../storage-client.js';
import { TEMP_PREFIX } from '../storage-keys.js';
import { fsyncDir } from '../../util/fs-atomic.js';
import type { DurableWriter } from './durable-write.js';
import { io, ioError, throwIfAborted, type FileContext } from './file-errors.js';

// A conditional put holds its lock for a few syscalls; one this old was left by a dead process.
const LOCK_STALE_MS = 10_000;

/** The file backend's version tag: a hash of the content (lease and identity objects are small). */
export function contentTag(bytes: Uint8Array): string {
  return createHash('sha256').update(bytes).digest('hex').slice(0, 32);
}

export interface ConditionalPut {
  ctx: FileContext;
  writer: DurableWriter;
  /** The object's current bytes; OBJECT_NOT_FOUND when missing. */
  read: (key: string) => Promise<Uint8Array>;
  key: string;
  /** Absolute path of the object. */
  target: string;
  body: Uint8Array;
  cond: PutCondition;
  signal: AbortSignal | undefined;
}

/**
 * Conditional put, atomic on a local POSIX file system. Create-if-absent: the object is written
 * to a temp file and link()ed to its name, which fails with EEXIST when the name exists (link is
 * atomic on local file systems and on NFS). Replace-if-match: under a lock file created with
 * O_EXCL next to the object, the current content's hash is compared and the temp file renamed
 * over it. A lock left by a process that died holding it (a window of a few syscalls) is broken
 * after LOCK_STALE_MS. Every writer of the key must go through this function.
 */
export async function putConditional(p: ConditionalPut): Promise<{ etag: string }> {
  const { ctx, writer, key, target, body, cond, signal } = p;
  const dir = path.dirname(target);
  throwIfAborted(ctx.url, signal, 'put', key);
  const { handle, tmp } = await writer.openTemp(dir, key);
  let placed = false;
  try {
    await writer.writeBytes(handle, body, key, signal);
    await io(ctx, 'write', key, () => handle.sync());
    await io(ctx, 'write', key, () => handle.close());
    if ('ifNoneMatch' in cond) {
      try {
        await link(tmp, target);
      } catch (err) {
        if (errnoCode(err) === 'EEXIST') throw preconditionFailed(ctx.url, key, 'it exists');
        throw ioError(ctx, 'write', key, err);
      }
    } else {
      const lock = path.join(dir, `${TEMP_PREFIX}lock-${path.basename(target)}`);
      await lockFile(ctx, lock, key, signal);
      try {
        let current: Uint8Array;
        try {
          current = await p.read(key);
        } catch (err) {
          if (isPitrError(err, 'OBJECT_NOT_FOUND')) throw preconditionFailed(ctx.url, key, 'it does not exist');
          throw err;
        }
        if (contentTag(current) !== cond.ifMatch) throw preconditionFailed(ctx.url, key, 'it changed');
        await io(ctx, 'write', key, () => rename(tmp, target));
        placed = true;
      } finally {
        await unlink(lock).catch(() => undefined);
      }
    }
    await io(ctx, 'write', key, () => fsyncDir(dir));
    return { etag: contentTag(body) };
  } finally {
    await handle.close().catch(() => undefined);
    if (!placed) await unlink(tmp).catch(() => undefined);
  }
}

async function lockFile(ctx: FileContext, lock: string, key: string, signal: AbortSignal | undefined): Promise<void> {
  for (;;) {
    throwIfAborted(ctx.url, signal, 'put', key);
    try {
      const h = await open(lock, 'wx');
      await h.close();
      return;
    } catch (err) {
      if (errnoCode(err) !== 'EEXIST') throw ioError(ctx, 'write', key, err);
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

function preconditionFailed(url: string, key: string, why: string): PitrError {
  return new PitrError('PRECONDITION_FAILED', `conditional write of "${key}" in ${url} refused: ${why}`, 'Another writer changed the object; read it again.');
}
