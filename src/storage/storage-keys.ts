import type { ByteRange, ObjectInfo } from './storage-client.js';

/** Names of in-flight writes in the file backend; reserved in every backend. */
export const TEMP_PREFIX = '.tmp-';

/**
 * Why `key` is not a valid key (or prefix, when `isPrefix`), or undefined when it is. Every
 * backend applies the same rules, although S3 itself would accept more: a replica must be copyable
 * between backends, so no backend may hold a key another cannot.
 */
export function keyProblem(key: string, isPrefix: boolean): string | undefined {
  if (!isPrefix && key === '') return 'keys may not be empty';
  if (key.includes('\\')) return 'keys may not contain backslashes';
  if (key.includes('\0')) return 'keys may not contain NUL';
  if (key.startsWith('/')) return 'keys are relative to the replica root and may not start with "/"';
  const segments = key.split('/');
  for (let i = 0; i < segments.length; i++) {
    const seg = segments[i]!;
    // A prefix may end with "/" (a directory) or mid-name, so its last segment may be empty or partial.
    const last = i === segments.length - 1;
    if (seg === '' && !(isPrefix && last)) return 'keys may not contain empty segments ("//" or a trailing "/")';
    if (seg === '.' || seg === '..') return 'keys may not contain "." or ".." segments';
    if (seg.startsWith(TEMP_PREFIX)) return `key segments may not start with "${TEMP_PREFIX}" (reserved for in-flight writes)`;
  }
  return undefined;
}

/** A bad range is a caller bug, not a storage failure: RangeError. */
export function checkRange(range: ByteRange, key: string): void {
  const { start, end } = range;
  if (!Number.isSafeInteger(start) || !Number.isSafeInteger(end) || start < 0 || end < start) {
    throw new RangeError(`invalid byte range ${start}-${end} for "${key}": need integers with 0 <= start <= end`);
  }
}

/** S3 orders keys by their UTF-8 bytes; JS string comparison (UTF-16) differs above U+FFFF. */
export function sortByKey(infos: ObjectInfo[]): ObjectInfo[] {
  const keyed = infos.map((info) => ({ info, bytes: Buffer.from(info.key, 'utf8') }));
  keyed.sort((a, b) => Buffer.compare(a.bytes, b.bytes));
  return keyed.map((k) => k.info);
}

export function messageOf(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
