import { randomBytes } from 'node:crypto';
import { access, constants, mkdir, open, stat, unlink } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { PitrError, errnoCode, type ErrorCode } from '../errors.js';

/** What a directory is for, so that an error names it and says what else the user can do. */
export interface DirRole {
  /** "state directory", "replica directory", "output directory". */
  name: string;
  /** Code when the path (or a parent) is a file, not a directory. */
  notDirCode: ErrorCode;
  /** The way out besides fixing the path, e.g. "or pass --state-dir with a directory on a writable disk". */
  otherwise: string;
}

/**
 * Create `dir` (and missing parents) if needed and prove that this process can create files in
 * it, by creating and removing an empty `.tmp-` file (a name no listing of pitr's reports).
 * Failures are PitrErrors saying what they are: PERMISSION_DENIED (permissions or a read-only
 * file system) or role.notDirCode (a file where a directory must be), with the path and the fix.
 */
export async function ensureWritableDir(dir: string, role: DirRole): Promise<void> {
  await makeDir(dir, role);
  const probe = join(dir, `.tmp-pitr-write-test-${randomBytes(4).toString('hex')}`);
  try {
    const fh = await open(probe, 'wx');
    await fh.close();
  } catch (err) {
    throw fsProblem(err, dir, role, 'create files in');
  }
  await unlink(probe).catch(() => {});
}

/** Like ensureWritableDir without the write: for checks that must change nothing (a dry run). */
export async function checkWritableDir(dir: string, role: DirRole): Promise<void> {
  let st;
  try {
    st = await stat(dir);
  } catch (err) {
    if (errnoCode(err) === 'ENOTDIR') throw notADirectory(await firstNonDirectory(dir), role, dir);
    throw fsProblem(err, dir, role, 'use');
  }
  if (!st.isDirectory()) throw notADirectory(dir, role);
  // access() reports a read-only mount (EROFS) even to root, and the permission bits otherwise.
  try {
    await access(dir, constants.W_OK | constants.X_OK);
  } catch (err) {
    throw fsProblem(err, dir, role, 'create files in');
  }
}

async function makeDir(dir: string, role: DirRole): Promise<void> {
  try {
    if ((await stat(dir)).isDirectory()) return;
    throw notADirectory(dir, role);
  } catch (err) {
    if (err instanceof PitrError) throw err;
    const code = errnoCode(err);
    if (code === 'ENOTDIR') throw notADirectory(await firstNonDirectory(dir), role, dir);
    if (code !== 'ENOENT') throw fsProblem(err, dir, role, 'use');
  }
  // One level at a time, parents first: mkdir's recursive mode reports a read-only parent as
  // ENOENT, which would send the user looking for a missing directory.
  const parent = dirname(dir);
  if (parent !== dir) await makeDir(parent, role);
  try {
    await mkdir(dir);
  } catch (err) {
    if (errnoCode(err) === 'EEXIST') {
      if ((await stat(dir)).isDirectory()) return; // made meanwhile by someone else
      throw notADirectory(dir, role);
    }
    throw fsProblem(err, dir, role, 'create');
  }
}

/** The first path from the root down to `path` that exists and is not a directory. */
async function firstNonDirectory(path: string): Promise<string> {
  const parts: string[] = [];
  for (let p = path; ; p = dirname(p)) {
    parts.unshift(p);
    if (dirname(p) === p) break;
  }
  for (const p of parts) {
    try {
      if (!(await stat(p)).isDirectory()) return p;
    } catch {
      break;
    }
  }
  return path;
}

function notADirectory(file: string, role: DirRole, wanted: string = file): PitrError {
  return new PitrError(
    role.notDirCode,
    file === wanted ? `${role.name} ${wanted} is a file, not a directory` : `${role.name} ${wanted} cannot be a directory: ${file} is a file`,
    `give a directory path (pitr does not replace files it did not make), ${role.otherwise}`,
  );
}

/** EACCES, EPERM, EROFS as PERMISSION_DENIED with the fix; other errno failures as STORAGE_IO naming the path. */
export function fsProblem(err: unknown, dir: string, role: DirRole, verb: string): Error {
  const code = errnoCode(err);
  const uid = typeof process.getuid === 'function' ? ` (uid ${process.getuid()})` : '';
  if (code === 'EROFS') {
    return new PitrError(
      'PERMISSION_DENIED',
      `cannot ${verb} the ${role.name} ${dir}: it is on a read-only file system`,
      `remount that file system read-write, ${role.otherwise}`,
      { cause: err },
    );
  }
  if (code === 'EACCES' || code === 'EPERM') {
    return new PitrError(
      'PERMISSION_DENIED',
      `cannot ${verb} the ${role.name} ${dir}: permission denied`,
      `let the user running pitr${uid} write there (chown or chmod ${dir}), ${role.otherwise}`,
      { cause: err },
    );
  }
  if (code === 'ENOENT') {
    return new PitrError(role.notDirCode, `${role.name} ${dir} does not exist`, `create it first, ${role.otherwise}`, { cause: err });
  }
  if (code !== undefined) {
    return new PitrError('STORAGE_IO', `cannot ${verb} the ${role.name} ${dir}: ${(err as Error).message}`, `check the disk and the path, ${role.otherwise}`, { cause: err });
  }
  return err instanceof Error ? err : new Error(String(err));
}
