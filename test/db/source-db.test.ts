/**
 * SourceDb.lockWriters: pitr's brief hold of SQLite's write lock (for a WAL reset). Real SQLite
 * connections in this process stand in for the app: the lock is a file lock, so they contend
 * exactly as another process would.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import Database from 'better-sqlite3';
import { SourceDb } from '../../src/db/source-db.js';

describe('SourceDb.lockWriters', () => {
  let dir = '';
  let path = '';
  let app: Database.Database;
  let src: SourceDb;

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'pitr-source-db-'));
    path = join(dir, 'app.db');
    app = new Database(path);
    app.pragma('journal_mode = WAL');
    app.exec('CREATE TABLE t (x INTEGER)');
    src = await SourceDb.open(path);
  });

  after(() => {
    src.close();
    app.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('blocks the app\'s commits while held and writes nothing itself', () => {
    const walFramesBefore = src.checkpoint('PASSIVE', 0).walFrames;
    const lock = src.lockWriters(0);
    assert.ok(lock, 'lock not taken on an idle database');
    app.pragma('busy_timeout = 0');
    assert.throws(() => app.exec('INSERT INTO t VALUES (1)'), (err: Error & { code?: string }) => err.code === 'SQLITE_BUSY');
    lock.release();
    lock.release(); // idempotent
    assert.equal(src.checkpoint('PASSIVE', 0).walFrames, walFramesBefore, 'the lock wrote WAL frames');
    app.exec('INSERT INTO t VALUES (2)');
    assert.deepEqual(app.prepare('SELECT x FROM t').pluck().all(), [2]);
  });

  it('gives up (null) while the app holds the write lock, and works once it is free', () => {
    app.exec('BEGIN IMMEDIATE');
    try {
      assert.equal(src.lockWriters(0), null);
      assert.equal(src.lockWriters(20), null);
    } finally {
      app.exec('COMMIT');
    }
    const lock = src.lockWriters(0);
    assert.ok(lock);
    lock.release();
  });
});
