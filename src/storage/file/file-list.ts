import { readdir, stat } from 'node:fs/promises';
import path from 'node:path';

import { errnoCode } from '../../errors.js';
import type { ObjectInfo } from '../storage-client.js';
import { keyProblem, sortByKey, TEMP_PREFIX } from '../storage-keys.js';
import { mapBounded } from '../../util/bounded.js';
import { ioError, throwIfAborted, type FileContext } from './file-errors.js';

// Enough parallel stat() calls to keep the libuv pool busy on a large replica without queueing
// tens of thousands of requests at once.
const STAT_CONCURRENCY = 32;

/**
 * Every object under `ctx.root` whose key starts with `prefix`, in key byte order. In-flight
 * puts (TEMP_PREFIX), symlinks and special files are never reported.
 */
export async function listFiles(ctx: FileContext, prefix: string, signal: AbortSignal | undefined): Promise<ObjectInfo[]> {
  const problem = keyProblem(prefix, true);
  if (problem !== undefined) throw new RangeError(`invalid list prefix "${prefix}" for replica ${ctx.url}: ${problem}`);
  throwIfAborted(ctx.url, signal, 'list', prefix);

  // Only the directory named by the prefix's complete segments can hold matches; within it only
  // entries starting with the trailing partial name do. Everything below those matches is in.
  const cut = prefix.lastIndexOf('/');
  const dirKey = cut === -1 ? '' : prefix.slice(0, cut);
  const namePrefix = prefix.slice(cut + 1);

  const files: string[] = [];
  const walk = async (dirKeyNow: string, only: string | undefined): Promise<void> => {
    throwIfAborted(ctx.url, signal, 'list', prefix);
    const dirPath = dirKeyNow === '' ? ctx.root : path.join(ctx.root, ...dirKeyNow.split('/'));
    let entries;
    try {
      entries = await readdir(dirPath, { withFileTypes: true });
    } catch (err) {
      // Nothing to list: no root yet, or a prefix through a file or a directory pruned meanwhile.
      const code = errnoCode(err);
      if (code === 'ENOENT' || code === 'ENOTDIR') return;
      throw ioError(ctx, 'list', prefix, err);
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

  const infos = await mapBounded(files, STAT_CONCURRENCY, async (key): Promise<ObjectInfo | undefined> => {
    throwIfAborted(ctx.url, signal, 'list', prefix);
    try {
      const st = await stat(path.join(ctx.root, ...key.split('/')));
      return { key, size: st.size, lastModified: st.mtime };
    } catch (err) {
      // Deleted between readdir and stat: it is simply not there any more.
      if (errnoCode(err) === 'ENOENT') return undefined;
      throw ioError(ctx, 'list', prefix, err);
    }
  });
  return sortByKey(infos.filter((info): info is ObjectInfo => info !== undefined));
}
