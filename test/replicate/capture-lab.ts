/**
 * A capture over a real database for in-process tests: the test's own better-sqlite3 connection
 * stands in for the app (WAL mode, no auto-checkpoint: the test decides when the app checkpoints),
 * with pitr's SourceDb, a spool in a directory and a Capture on a new generation.
 */
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before } from 'node:test';
import { pathToFileURL } from 'node:url';
import Database from 'better-sqlite3';
import { SourceDb } from '../../src/db/source-db.js';
import { silentLogger } from '../../src/log.js';
import { Capture } from '../../src/replicate/capture/capture.js';
import { Spool } from '../../src/replicate/spool.js';
import { FileStorage } from '../../src/storage/file/file-storage.js';

export interface CaptureLab {
  dbPath: string;
  spoolDir: string;
  app: Database.Database;
  src: SourceDb;
  spool: Spool;
  capture: Capture;
  /** The txid before the first captured commit. */
  startTxid: number;
  /** Close pitr's connections, then the app's. */
  close(): void;
}

/** In `dir` (which must exist): app.db created with `schema`, then a capture of it (checkpoints and resets off; truncation off unless `truncateBytes`). */
export async function openCaptureLab(dir: string, schema: string, opts: { truncateBytes?: number } = {}): Promise<CaptureLab> {
  const dbPath = join(dir, 'app.db');
  const spoolDir = join(dir, 'spool');
  const stateDir = join(dir, 'state');
  mkdirSync(spoolDir);
  mkdirSync(stateDir);
  const app = new Database(dbPath);
  app.pragma('journal_mode = WAL');
  app.pragma('wal_autocheckpoint = 0');
  app.exec(schema);
  const src = await SourceDb.open(dbPath);
  const spool = new Spool(new FileStorage(spoolDir, pathToFileURL(spoolDir).href));
  const { capture } = await Capture.start(
    src,
    spool,
    { dbPath, stateDir, checkpointFrames: 1e9, truncateBytes: opts.truncateBytes ?? 0, resetBytes: 0, log: silentLogger },
    null,
    0,
  );
  return {
    dbPath,
    spoolDir,
    app,
    src,
    spool,
    capture,
    startTxid: capture.state.lastTxid,
    close() {
      src.close();
      app.close();
    },
  };
}

/**
 * For a describe block: a temp directory made before its tests and removed after them, and the
 * lab opened in it (once per block) closed first.
 */
export function captureLabPerBlock(prefix: string): { open: (schema: string, opts?: { truncateBytes?: number }) => Promise<CaptureLab> } {
  let dir = '';
  let lab: CaptureLab | undefined;
  before(() => {
    dir = mkdtempSync(join(tmpdir(), `pitr-${prefix}-`));
  });
  after(() => {
    lab?.close();
    rmSync(dir, { recursive: true, force: true });
  });
  return { open: async (schema, opts) => (lab = await openCaptureLab(dir, schema, opts)) };
}
