import { readdirSync, readFileSync } from 'node:fs';

/**
 * File descriptors one database costs the agent: its SQLite connections (the writer, the locker and
 * the readers: src/db/source-db.ts; the state directory's locks: state-lock.ts), each holding the
 * database and its -wal, plus the spool's. Measured: 15 per idle database at 10, 100 and 1,000
 * (bench/many-bench.ts, docs/BENCHMARKS.md).
 */
export const FDS_PER_DATABASE = 15;
/** Kept free for everything else: sockets to the replicas, the control socket, restores, verify. */
const RESERVE = 256;

/** The process's soft limit on open files, or undefined where /proc does not say. */
export function openFilesLimit(): number | undefined {
  try {
    const m = /^Max open files\s+(\d+|unlimited)/m.exec(readFileSync('/proc/self/limits', 'utf8'));
    if (!m) return undefined;
    return m[1] === 'unlimited' ? Infinity : Number(m[1]);
  } catch {
    return undefined;
  }
}

/**
 * How many databases the agent can hold under the open-files limit, counted once at start from
 * the descriptors open then (Infinity when unknown). A count rather than a look at the open
 * descriptors before each start: databases open their connections after they are admitted, eight
 * at a time, and a look would admit them all.
 */
export function databaseCapacity(): number {
  const limit = openFilesLimit();
  if (limit === undefined || limit === Infinity) return Infinity;
  let open: number;
  try {
    open = readdirSync('/proc/self/fd').length;
  } catch {
    return Infinity;
  }
  return Math.max(0, Math.floor((limit - RESERVE - open) / FDS_PER_DATABASE));
}
