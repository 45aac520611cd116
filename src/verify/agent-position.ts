import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { errnoCode, PitrError } from '../errors.js';
import type { WalCursor } from '../wal/wal-cursor.js';

/**
 * What verify needs of the position `pitr replicate` saves in its state dir (position.json, format
 * version 1): which generation and txid the agent holds, and the WAL cursor and database it
 * describes. Read here rather than through the agent's code: verify never imports replicate.
 */
export interface AgentPosition {
  generation: string;
  lastTxid: number;
  /** Cursor in the current WAL incarnation; null when the WAL was absent or truncated. */
  cursor: WalCursor | null;
  dbSizePages: number;
  db: { dev: number; ino: number };
}

export const POSITION_FILE = 'position.json';

/** The agent's saved position in `stateDir`, or null when it has none. Throws SPOOL_CORRUPT when unreadable. */
export async function readAgentPosition(stateDir: string): Promise<AgentPosition | null> {
  const path = join(stateDir, POSITION_FILE);
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    if (errnoCode(err) === 'ENOENT') return null;
    throw err;
  }
  try {
    const p = JSON.parse(text) as Record<string, unknown> & AgentPosition;
    const db = p.db as Partial<AgentPosition['db']> | undefined;
    if (
      p['version'] !== 1 ||
      typeof p.generation !== 'string' ||
      !Number.isSafeInteger(p.lastTxid) ||
      !Number.isSafeInteger(p.dbSizePages) ||
      typeof db?.dev !== 'number' ||
      typeof db.ino !== 'number' ||
      (p.cursor !== null && typeof p.cursor !== 'object')
    ) {
      throw new Error('unexpected shape');
    }
    return { generation: p.generation, lastTxid: p.lastTxid, cursor: p.cursor, dbSizePages: p.dbSizePages, db: { dev: db.dev, ino: db.ino } };
  } catch (err) {
    throw new PitrError('SPOOL_CORRUPT', `state file ${path} is unreadable: ${(err as Error).message}`, 'delete it; pitr will start a new generation with a fresh snapshot', { cause: err });
  }
}

/** True when two reads of the position describe the same state. */
export function samePosition(a: AgentPosition, b: AgentPosition): boolean {
  return JSON.stringify(a) === JSON.stringify(b);
}
