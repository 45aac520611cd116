/**
 * FileGuard: what it takes for pitr to notice that the files at the database's paths are no longer
 * the ones its connections use, or that the database was written outside SQLite. Real files and
 * real SQLite connections (the test's own connection plays the app), no stand-ins.
 */
import assert from 'node:assert/strict';
import { copyFileSync, renameSync, rmSync, truncateSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import Database from 'better-sqlite3';
import { captureLabPerBlock, type CaptureLab } from '../replicate/capture-lab.js';

const SCHEMA = 'CREATE TABLE t (k INTEGER PRIMARY KEY, v BLOB)';

/** Commits that grow the file, so page 1 (the header's page count) is in the WAL each time. */
function grow(lab: CaptureLab, n: number): void {
  const ins = lab.app.prepare('INSERT INTO t (v) VALUES (randomblob(3000))');
  for (let i = 0; i < n; i++) ins.run();
}

/** Another database with the same schema: what an operator copies over the live file. */
function backupOf(dir: string): string {
  const path = join(dir, 'backup.db');
  const db = new Database(path);
  db.exec(SCHEMA);
  db.exec('INSERT INTO t (v) VALUES (randomblob(100))');
  db.close();
  return path;
}

describe('FileGuard', () => {
  describe('checkpoints by the app are not foreign writes', () => {
    const labs = captureLabPerBlock('file-guard-ok');
    it('stays quiet while the app checkpoints what capture has read', async () => {
      const lab = await labs.open(SCHEMA);
      for (let round = 0; round < 5; round++) {
        grow(lab, 20);
        assert.equal((await lab.capture.pass()).broken, undefined);
        // The header now comes from a page-1 frame capture read.
        const ck = lab.app.pragma('wal_checkpoint(PASSIVE)') as { checkpointed: number; log: number }[];
        assert.equal(ck[0]!.checkpointed, ck[0]!.log);
        assert.equal(lab.src.guard.problem(true), null, `round ${round}`);
      }
      // The WAL restarts on the app's next commit, and capture follows it.
      grow(lab, 3);
      assert.equal((await lab.capture.pass()).broken, undefined);
      assert.equal(lab.src.guard.problem(true), null);
    });
  });

  describe('a file copied over the database in place', () => {
    const labs = captureLabPerBlock('file-guard-cp');
    it('is a foreign write (same inode, a header SQLite never wrote)', async () => {
      const lab = await labs.open(SCHEMA);
      grow(lab, 10);
      await lab.capture.pass();
      copyFileSync(backupOf(join(lab.dbPath, '..')), lab.dbPath);
      assert.equal(lab.src.guard.identityProblem(), null, 'the inode is the same');
      assert.match(lab.src.guard.problem(true) ?? '', /written outside SQLite/);
      // Before capture has read up to its mark the header cannot be judged: identity only.
      assert.equal(lab.src.guard.problem(false), null);
      const r = await lab.capture.pass();
      assert.match(r.broken ?? '', /written outside SQLite/);
    });
  });

  describe('the database truncated in place', () => {
    const labs = captureLabPerBlock('file-guard-truncate');
    it('is a foreign write', async () => {
      const lab = await labs.open(SCHEMA);
      grow(lab, 5);
      await lab.capture.pass();
      truncateSync(lab.dbPath, 0);
      assert.match(lab.src.guard.problem(true) ?? '', /truncated to 0 bytes/);
    });
  });

  describe('-wal and -shm removed (an operator restoring a backup)', () => {
    const labs = captureLabPerBlock('file-guard-rm');
    it('refuses every checkpoint, lock and read-mark move through the old files', async () => {
      const lab = await labs.open(SCHEMA);
      grow(lab, 5);
      await lab.capture.pass();
      rmSync(`${lab.dbPath}-wal`);
      rmSync(`${lab.dbPath}-shm`);
      assert.match(lab.src.guard.identityProblem() ?? '', /-wal file .* was removed/);
      for (const call of [() => lab.src.checkpoint('PASSIVE', 0), () => lab.src.lockWriters(0), () => lab.src.advanceRead()]) {
        assert.throws(call, (err: Error & { code?: string }) => err.code === 'DB_FILES_CHANGED');
      }
      const r = await lab.capture.pass();
      assert.match(r.broken ?? '', /was removed/);
    });
  });

  describe('a file renamed over the database', () => {
    const labs = captureLabPerBlock('file-guard-rename');
    it('is another file at the path', async () => {
      const lab = await labs.open(SCHEMA);
      await lab.capture.pass();
      renameSync(backupOf(join(lab.dbPath, '..')), lab.dbPath);
      assert.match(lab.src.guard.identityProblem() ?? '', /database file .* was replaced/);
      assert.match((await lab.capture.pass()).broken ?? '', /was replaced/);
    });
  });
});
