import { statSync } from 'node:fs';

/**
 * How long the database's files must stay unchanged after they changed under the agent before it
 * opens them again: an operator's restore is several commands, and a snapshot of a file still being
 * copied would be dropped anyway (Spool.addSnapshot's check).
 */
export const SETTLE_MS = 1000;

/**
 * Waits out an operator's work on the database's files: after they changed under the agent, how
 * long until the database, -wal and -shm have been unchanged (identity, size, mtime) for SETTLE_MS.
 */
export class FilesSettle {
  private state: { sig: string; since: number } | undefined;

  constructor(private readonly dbPath: string) {}

  /** The files just changed: the wait starts (again) now. */
  restart(now = Date.now()): void {
    this.state = { sig: this.signature(), since: now };
  }

  /** Ms still to wait (0 = settled); every change seen restarts the wait. */
  remainingMs(now = Date.now()): number {
    const sig = this.signature();
    if (this.state === undefined || sig !== this.state.sig) this.state = { sig, since: now };
    return Math.max(0, this.state.since + SETTLE_MS - now);
  }

  clear(): void {
    this.state = undefined;
  }

  /** The database's, -wal's and -shm's identities, sizes and mtimes, as one comparable string. */
  private signature(): string {
    return ['', '-wal', '-shm']
      .map((suffix) => {
        const st = statSync(`${this.dbPath}${suffix}`, { throwIfNoEntry: false });
        return st ? `${st.ino}:${st.size}:${st.mtimeMs}` : 'missing';
      })
      .join('/');
  }
}
