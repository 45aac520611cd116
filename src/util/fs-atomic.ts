import { closeSync, fsync, mkdirSync, openSync, renameSync, unlinkSync, writeSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { dirname, basename, join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { promisify } from 'node:util';

/** fsync of a descriptor on the thread pool: the one step of a local write that may take long. */
const fsyncFd: (fd: number) => Promise<void> = promisify(fsync);

/** fsync a directory so that a rename or a new entry in it survives a power cut. */
export async function fsyncDir(dir: string): Promise<void> {
  // Windows cannot open a directory for fsync, and NTFS makes renames durable by itself.
  if (process.platform === 'win32') return;
  const fh = await open(dir, 'r');
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}

/**
 * fsyncDir for a directory on a local disk: opened and closed synchronously (microseconds), only
 * the fsync goes through the thread pool. Each thread-pool round trip costs ~0.5-1 ms of latency
 * on a VM where waking threads is expensive, more than these syscalls themselves.
 */
async function fsyncLocalDir(dir: string): Promise<void> {
  if (process.platform === 'win32') return;
  const fd = openSync(dir, 'r');
  try {
    await fsyncFd(fd);
  } finally {
    closeSync(fd);
  }
}

/** A temp path next to `path` (same filesystem, so rename is atomic), hidden from listings. */
export function tempPathFor(path: string): string {
  return join(dirname(path), `.tmp-${basename(path)}-${randomBytes(4).toString('hex')}`);
}

/**
 * Write `data` to `path` on a local disk atomically and durably, through the temp file `tmp` next
 * to it: write, fsync, close, rename, fsync the directory. Everything but the two fsyncs is
 * synchronous (see fsyncLocalDir): capture spools and saves its position this way after every pass,
 * on the path of every commit's lag. `exclusive` refuses a `tmp` that exists; `beforeRename` may
 * throw to cancel (the last moment before the file appears). `tmp` is removed on any failure
 * before the rename. Errors are the raw fs ones.
 */
export async function writeLocalFileDurably(
  tmp: string,
  path: string,
  data: Uint8Array | string,
  opts: { exclusive?: boolean; beforeRename?: () => void } = {},
): Promise<void> {
  const fd = openSync(tmp, opts.exclusive ? 'wx' : 'w');
  let fdOpen = true;
  let renamed = false;
  try {
    const bytes = typeof data === 'string' ? Buffer.from(data) : data;
    for (let at = 0; at < bytes.length; ) at += writeSync(fd, bytes, at, bytes.length - at);
    await fsyncFd(fd);
    fdOpen = false;
    closeSync(fd);
    opts.beforeRename?.();
    renameSync(tmp, path);
    renamed = true;
  } finally {
    if (fdOpen) closeSync(fd);
    if (!renamed) {
      try {
        unlinkSync(tmp);
      } catch {
        // best effort: a leftover temp file is hidden and harmless
      }
    }
  }
  await fsyncLocalDir(dirname(path));
}

/** Write a small file (`data`) to `path` on a local disk atomically and durably (writeLocalFileDurably). */
export async function writeFileAtomic(path: string, data: Uint8Array | string): Promise<void> {
  mkdirSync(dirname(path), { recursive: true });
  await writeLocalFileDurably(tempPathFor(path), path, data);
}
