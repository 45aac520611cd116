import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { errnoCode, PitrError } from '../../errors.js';
import { writeFileAtomic } from '../../util/fs-atomic.js';
import type { WalCursor } from '../../wal/wal-cursor.js';
import type { Logger } from '../../log.js';

/**
 * Where capture stood after the last durable spool write. Saved after the spool entry it
 * describes is fsync'd, so after a crash it can only be behind the spool, never ahead of it
 * (startup checks both and starts a new generation when they disagree).
 */
export interface Position {
  version: 1;
  generation: string;
  /** The last txid captured (a snapshot's txid right after a generation starts). */
  lastTxid: number;
  lastTime: number;
  /** Cursor in the current WAL incarnation; null when the WAL was absent or truncated. */
  cursor: WalCursor | null;
  dbSizePages: number;
  pageSize: number;
  db: { dev: number; ino: number };
}

const FILE = 'position.json';

export async function loadPosition(stateDir: string): Promise<Position | null> {
  let text: string;
  try {
    text = await readFile(join(stateDir, FILE), 'utf8');
  } catch (err) {
    if (errnoCode(err) === 'ENOENT') return null;
    throw err;
  }
  try {
    const p = JSON.parse(text) as Position;
    if (p.version !== 1 || typeof p.generation !== 'string' || !Number.isSafeInteger(p.lastTxid)) throw new Error('unexpected shape');
    return p;
  } catch (err) {
    // A damaged position only costs a new generation; refusing to start would cost replication.
    throw new PitrError('SPOOL_CORRUPT', `state file ${join(stateDir, FILE)} is unreadable: ${(err as Error).message}`, 'delete it; pitr will start a new generation with a fresh snapshot', { cause: err });
  }
}

/** loadPosition, or null with a warning when it is unreadable (that only costs a new generation). */
export async function loadPositionOrWarn(stateDir: string, log: Logger): Promise<Position | null> {
  try {
    return await loadPosition(stateDir);
  } catch (err) {
    log.warn('saved position unreadable; starting a new generation', { err });
    return null;
  }
}

export async function savePosition(stateDir: string, p: Position): Promise<void> {
  await writeFileAtomic(join(stateDir, FILE), JSON.stringify(p));
}
