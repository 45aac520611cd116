import { errnoCode, isPitrError, PitrError } from '../../errors.js';
import { messageOf } from '../storage-keys.js';

/* The file backend's failures as PitrErrors: message naming the object, hint, permanent flag. */

export type Op = 'put' | 'get' | 'list' | 'delete' | 'check' | 'read' | 'write';

/** The replica an error is about: its display URL and its directory. */
export interface FileContext {
  url: string;
  root: string;
}

/** errno codes of a replica that stays unusable until someone changes it. */
const PERMANENT_ERRNO = new Set(['EACCES', 'EPERM', 'EROFS', 'ENOTDIR']);

export function ioError(ctx: FileContext, op: Op, key: string, err: unknown): PitrError {
  const code = errnoCode(err);
  const what = key === '' ? `replica ${ctx.url}` : `"${key}" in ${ctx.url}`;
  return new PitrError(
    'STORAGE_IO',
    `cannot ${op} ${what}: ${messageOf(err)}`,
    hintFor(code, ctx.root),
    // No retry makes a directory writable or a file system read-write.
    { cause: err, permanent: code !== undefined && PERMANENT_ERRNO.has(code) },
  );
}

/** `fn`, its failures as STORAGE_IO (ABORTED once `signal` has fired; PitrErrors pass through). */
export async function io<T>(ctx: FileContext, op: Op, key: string, fn: () => Promise<T>, signal?: AbortSignal): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    if (isPitrError(err)) throw err;
    if (signal?.aborted) throw abortError(ctx.url, signal, op, key);
    throw ioError(ctx, op, key, err);
  }
}

export function abortError(url: string, signal: AbortSignal, op: Op, key: string): PitrError {
  return new PitrError('ABORTED', `${op} of "${key}" in ${url} was aborted`, undefined, { cause: signal.reason });
}

export function throwIfAborted(url: string, signal: AbortSignal | undefined, op: Op, key: string): void {
  if (signal?.aborted) throw abortError(url, signal, op, key);
}

export function notFound(url: string, key: string): PitrError {
  return new PitrError(
    'OBJECT_NOT_FOUND',
    `object "${key}" not found in replica ${url}`,
    'The replica changed while pitr was using it (retention, another agent, manual cleanup) or the ' +
      'replica URL is wrong. Run the command again; if it persists, check the replica URL.',
  );
}

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
