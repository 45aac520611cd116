import { readdirSync, readlinkSync, statSync } from 'node:fs';

export interface HeldFile {
  /** The path the descriptor was opened at, " (deleted)" taken off. */
  path: string;
  dev: number;
  ino: number;
}

/**
 * The files this process holds open whose path (as opened) is one of `paths`, removed ones included
 * (Linux names them "PATH (deleted)"), from /proc/self/fd. Undefined where /proc is not available.
 * Why: a SQLite connection keeps using the -wal and -shm it opened even after they were replaced at
 * their paths; only the descriptors say which files it really uses.
 */
export function heldFiles(paths: readonly string[]): HeldFile[] | undefined {
  let fds: string[];
  try {
    fds = readdirSync('/proc/self/fd');
  } catch {
    return undefined;
  }
  const wanted = new Set(paths);
  const out: HeldFile[] = [];
  for (const fd of fds) {
    let target: string;
    try {
      target = readlinkSync(`/proc/self/fd/${fd}`);
    } catch {
      continue; // closed meanwhile (the readdir's own descriptor, for one)
    }
    const name = target.endsWith(' (deleted)') ? target.slice(0, -' (deleted)'.length) : target;
    if (!wanted.has(name)) continue;
    const st = statSync(`/proc/self/fd/${fd}`, { throwIfNoEntry: false });
    if (st) out.push({ path: name, dev: st.dev, ino: st.ino });
  }
  return out;
}
