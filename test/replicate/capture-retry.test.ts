/**
 * A capture pass that fails part way (here the spool cannot be written: a real ENOTDIR, no mock)
 * must not lose the commits it had not spooled yet, even when the app checkpoints and writes on
 * before the spool heals. The danger: the failed pass had moved pitr's read mark past what was
 * spooled; had the retry moved it again, to a WAL the app had fully backfilled, the new reader
 * would use no WAL frame and no longer stop the app's next commit from restarting the WAL over
 * those frames. Real SQLite connections in this process stand in for the app.
 */
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, unlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { pathToFileURL } from 'node:url';
import Database from 'better-sqlite3';
import { SourceDb } from '../../src/db/source-db.js';
import { silentLogger } from '../../src/log.js';
import { Capture } from '../../src/replicate/capture.js';
import { Spool } from '../../src/replicate/spool.js';
import { FileStorage } from '../../src/storage/file/file-storage.js';

describe('capture after a failed pass', () => {
  let dir = '';
  let app: Database.Database;
  let src: SourceDb;

  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'pitr-capture-retry-'));
  });

  after(() => {
    src?.close();
    app?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('catches up before it moves the read mark again, so no commit is lost', async () => {
    const dbPath = join(dir, 'app.db');
    const spoolDir = join(dir, 'spool');
    const stateDir = join(dir, 'state');
    mkdirSync(spoolDir);
    mkdirSync(stateDir);
    app = new Database(dbPath);
    app.pragma('journal_mode = WAL');
    app.pragma('wal_autocheckpoint = 0'); // the test decides when the app checkpoints
    app.exec('CREATE TABLE t (x TEXT)');
    src = await SourceDb.open(dbPath);
    const spool = new Spool(new FileStorage(spoolDir, pathToFileURL(spoolDir).href));
    const { capture } = await Capture.start(
      src,
      spool,
      { dbPath, stateDir, checkpointFrames: 1e9, truncateBytes: 0, resetBytes: 0, log: silentLogger },
      null,
      0,
    );
    const startTxid = capture.state.lastTxid;

    app.exec("INSERT INTO t VALUES ('a')");
    const blocker = join(spoolDir, 'generations');
    writeFileSync(blocker, 'not a directory'); // every spool write now fails
    await assert.rejects(capture.pass());
    // The app checkpoints everything (pitr's mark is at the WAL's end) ...
    const ck = app.pragma('wal_checkpoint(PASSIVE)') as { busy: number; log: number; checkpointed: number }[];
    assert.equal(ck[0]!.checkpointed, ck[0]!.log);
    // ... pitr retries while the spool is still broken ...
    await assert.rejects(capture.pass());
    // ... and the app commits again, which would restart the WAL if pitr held no WAL frame.
    app.exec("INSERT INTO t VALUES ('b')");
    unlinkSync(blocker);

    const r = await capture.pass();
    assert.equal(r.broken, undefined);
    assert.equal(r.transactions, 2, 'both commits captured');
    assert.equal(capture.state.lastTxid, startTxid + 2);
  });
});
