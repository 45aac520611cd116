import { open } from 'node:fs/promises';
import { PitrError, errnoCode } from '../../errors.js';
import type { SourceDb } from '../../db/source-db.js';
import { scanWal, verifyWalPrefix, type WalCommit, type WalScanResult } from '../../wal/wal-scan.js';
import { WAL_FRAME_HEADER_SIZE, frameOffset } from '../../wal/wal-format.js';
import { sameWalIncarnation } from '../../wal/wal-cursor.js';
import type { Position } from './position.js';

/**
 * The WAL as found at startup, under the first read transaction (which `db.advanceRead()` begins).
 * WAL_INVALID when it keeps changing under the scan or has an invalid header.
 */
export async function scanAtStart(db: SourceDb, dbPath: string, walPath: string): Promise<Exclude<WalScanResult, { kind: 'invalid-header' }>> {
  let scan: WalScanResult | undefined;
  // The first read transaction has no predecessor protecting the WAL, so a restart could
  // overwrite frames while we scan: scan until the header is the same before and after.
  for (let attempt = 0; attempt < 10; attempt++) {
    db.advanceRead();
    const before = await readHeaderBytes(walPath);
    scan = await scanWal(walPath, null);
    const after = await readHeaderBytes(walPath);
    if (before === after) break;
    scan = undefined;
  }
  if (!scan) throw new PitrError('WAL_INVALID', `the WAL of ${dbPath} kept being restarted while pitr read it`, 'retry; if it persists, report it');
  if (scan.kind === 'invalid-header') {
    throw new PitrError('WAL_INVALID', `${walPath} has an invalid header`, 'check that the file is a SQLite WAL of this database');
  }
  return scan;
}

/** Why the saved position cannot be continued, or null when continuity is proven. */
export async function continuityProblem(
  db: SourceDb,
  walPath: string,
  position: Position | null,
  knownMaxTxid: number,
  scan: WalScanResult,
): Promise<string | null> {
  if (!position) return 'no saved position';
  if (position.pageSize !== db.info.pageSize) return 'the page size changed';
  if (position.db.dev !== db.info.dev || position.db.ino !== db.info.ino) return 'the database file was replaced';
  if (knownMaxTxid > position.lastTxid) return 'the spool or a replica is ahead of the saved position (unclean stop)';
  if (!position.cursor) return 'the WAL was empty when the agent stopped, so changes made while it was down cannot be proven complete';
  if (scan.kind !== 'ok') return 'the WAL was checkpointed and removed while the agent was down';
  if (!sameWalIncarnation(scan.header, position.cursor)) return 'the WAL was restarted while the agent was down';
  if (scan.cursor.frame < position.cursor.frame) return 'the WAL is shorter than the saved position';
  if (!(await verifyWalPrefix(walPath, position.cursor))) return 'the WAL frames before the saved position changed';
  return null;
}

/** Tell the guard every page-1 image among `commits`' frames in the WAL at walPath. */
export async function notePageOneFrames(db: SourceDb, walPath: string, commits: readonly WalCommit[]): Promise<void> {
  const frames: number[] = [];
  for (const c of commits) c.pgnos.forEach((pgno, i) => pgno === 1 && frames.push(c.firstFrame + i));
  if (frames.length === 0) return;
  const page = Buffer.alloc(db.info.pageSize);
  const fh = await open(walPath, 'r');
  try {
    for (const f of frames) {
      const { bytesRead } = await fh.read(page, 0, page.length, frameOffset(f, db.info.pageSize) + WAL_FRAME_HEADER_SIZE);
      if (bytesRead === page.length) db.guard.notePageOne(page);
    }
  } finally {
    await fh.close();
  }
}

async function readHeaderBytes(walPath: string): Promise<string> {
  try {
    const fh = await open(walPath, 'r');
    try {
      const buf = Buffer.alloc(32);
      const { bytesRead } = await fh.read(buf, 0, 32, 0);
      return buf.subarray(0, bytesRead).toString('hex');
    } finally {
      await fh.close();
    }
  } catch (err) {
    if (errnoCode(err) === 'ENOENT') return 'missing';
    throw err;
  }
}
