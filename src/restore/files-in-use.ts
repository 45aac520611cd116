import { readFileSync, readdirSync, statSync } from 'node:fs';

/** A process that uses one of the files asked about. */
export interface FileUser {
  pid: number;
  /** Its command name (/proc/PID/comm), when readable. */
  command: string | undefined;
  /** It holds POSIX locks on one of the files: SQLite's, for a database, its -wal or -shm. */
  locks: boolean;
  /** It has one of the files open. */
  open: boolean;
}

/**
 * The other processes that hold locks on or have open any of `paths` (those that exist), found
 * through /proc: /proc/locks for locks (SQLite keeps a shared lock on a WAL database and on its
 * -shm for as long as a connection is open), /proc/PID/fd for open files (a rollback-journal
 * database holds no lock between transactions). Reads only; opens none of the files, so it can
 * neither take nor drop a lock, write, checkpoint, or delete a -wal. Returns undefined where there
 * is no /proc (not Linux): the caller cannot tell. Processes of other users are seen only as far
 * as /proc shows them (all of them as root; /proc/locks shows every lock in the pid namespace).
 */
export function findFileUsers(paths: readonly string[]): FileUser[] | undefined {
  let locksText: string;
  try {
    locksText = readFileSync('/proc/locks', 'utf8');
  } catch {
    return undefined;
  }
  const ids = new Map<string, string>();
  for (const p of paths) {
    try {
      const st = statSync(p, { bigint: true });
      ids.set(`${st.dev}:${st.ino}`, p);
    } catch {
      // not there: nobody uses it
    }
  }
  if (ids.size === 0) return [];
  const users = new Map<number, FileUser>();
  const user = (pid: number): FileUser => {
    let u = users.get(pid);
    if (!u) {
      u = { pid, command: commandOf(pid), locks: false, open: false };
      users.set(pid, u);
    }
    return u;
  };

  // "1: POSIX  ADVISORY  READ 1234 fd:01:5678 128 128", blocked waiters as "1: -> POSIX ...";
  // OFD locks show pid -1 (their owner is found by the fd scan below).
  const inodes = new Set([...ids.keys()].map((k) => k.split(':')[1]));
  for (const line of locksText.split('\n')) {
    const f = line.replace('->', '').trim().split(/\s+/);
    const [major, minor, ino] = (f[5] ?? '').split(':');
    if (ino === undefined || !inodes.has(ino)) continue;
    const dev = makeDev(parseInt(major ?? '', 16), parseInt(minor ?? '', 16));
    const pid = Number(f[4]);
    if (!ids.has(`${dev}:${ino}`) || !(pid > 0) || pid === process.pid) continue;
    user(pid).locks = true;
  }

  for (const entry of safeReaddir('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const pid = Number(entry);
    if (pid === process.pid) continue;
    for (const fd of safeReaddir(`/proc/${entry}/fd`)) {
      try {
        const st = statSync(`/proc/${entry}/fd/${fd}`, { bigint: true });
        if (ids.has(`${st.dev}:${st.ino}`)) {
          user(pid).open = true;
          break;
        }
      } catch {
        // closed meanwhile, or not ours to look at
      }
    }
  }
  return [...users.values()].sort((a, b) => a.pid - b.pid);
}

/** "pid 1234 (node) has it open and locked", for messages. */
export function describeFileUser(u: FileUser): string {
  const name = `pid ${u.pid}${u.command ? ` (${u.command})` : ''}`;
  return u.locks ? `${name} ${u.open ? 'has it open and locked' : 'holds locks on it'}` : `${name} has it open`;
}

function commandOf(pid: number): string | undefined {
  try {
    return readFileSync(`/proc/${pid}/comm`, 'utf8').trim() || undefined;
  } catch {
    return undefined;
  }
}

function safeReaddir(dir: string): string[] {
  try {
    return readdirSync(dir);
  } catch {
    return [];
  }
}

/** glibc's makedev, as st_dev is encoded on Linux (major 12 bits + minor 20 bits, split). */
function makeDev(major: number, minor: number): bigint {
  const ma = BigInt(major);
  const mi = BigInt(minor);
  return ((ma & 0xfffn) << 8n) | ((ma & ~0xfffn) << 32n) | (mi & 0xffn) | ((mi & ~0xffn) << 12n);
}
