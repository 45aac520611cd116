/**
 * An app that opens the database for each piece of work and closes it again (scripts, cron jobs,
 * per-request connections), played by the sqlite3 shell: one process per commit. When such an app
 * closes what it believes is the last connection, SQLite checkpoints and deletes the WAL unless
 * another connection holds a SHARED lock on the database file. pitr's connections must hold it the
 * whole time, including after the agent has read the database file itself for a snapshot (closing a
 * descriptor of its own used to drop SQLite's locks, and every later commit was lost).
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, describe, it } from 'node:test';
import Database from 'better-sqlite3';
import { makeTempDir, removeTempDir, runCliJson, startAgent, waitUntil, type RestoreOutput } from './helpers.js';

const temps: string[] = [];
after(async () => {
  for (const t of temps) await removeTempDir(t);
});

function shell(db: string, sql: string): void {
  execFileSync('sqlite3', [db, sql], { stdio: ['ignore', 'ignore', 'pipe'] });
}

function rows(path: string): number[] {
  const db = new Database(path, { readonly: true, fileMustExist: true });
  try {
    return db.prepare('SELECT x FROM t ORDER BY x').pluck().all() as number[];
  } finally {
    db.close();
  }
}

describe('an app that opens and closes the database per commit', () => {
  it('loses no commit when the app closes its last connection after each one', async () => {
    const dir = await makeTempDir('pitr-open-close-');
    temps.push(dir);
    const db = join(dir, 'app.db');
    const replica = join(dir, 'replica');
    shell(db, 'PRAGMA journal_mode=WAL; CREATE TABLE t(x INTEGER PRIMARY KEY); INSERT INTO t VALUES (1);');
    const agent = startAgent([db, replica, '--sync-interval', '0', '--state-dir', join(dir, 'state')]);
    try {
      let probe = 0;
      const latest = async (): Promise<number[] | undefined> => {
        const out = join(dir, `probe-${probe++}.db`);
        try {
          await runCliJson<RestoreOutput>(['restore', replica, '-o', out, '--json']);
        } catch {
          return undefined; // no snapshot yet
        }
        return rows(out);
      };
      await waitUntil('the first snapshot', async () => ((await latest())?.length === 1 ? true : undefined));
      // Each commit is its own sqlite3 process; pauses let the agent see the WAL between them,
      // and some commits come in quick succession.
      for (let x = 2; x <= 8; x++) {
        shell(db, `INSERT INTO t VALUES (${x});`);
        if (x % 3 !== 0) await sleep(300);
      }
      const want = [1, 2, 3, 4, 5, 6, 7, 8];
      await waitUntil('every commit in the replica', async () => {
        const got = await latest();
        return got !== undefined && got.length === want.length ? got : undefined;
      });
      const stopped = await agent.stop();
      assert.equal(stopped.code, 0, stopped.stderr);
      const out = join(dir, 'final.db');
      const r = await runCliJson<RestoreOutput>(['restore', replica, '-o', out, '--json']);
      assert.deepEqual(rows(out), want);
      // Exact point in time too: each txid after the snapshot adds exactly one row.
      for (let i = 1; i < want.length; i++) {
        const at = join(dir, `txid-${i}.db`);
        await runCliJson<RestoreOutput>(['restore', replica, '-o', at, '--txid', String(r.snapshotTxid + i), '--json']);
        assert.deepEqual(rows(at), want.slice(0, i + 1), `txid ${r.snapshotTxid + i}`);
      }
    } finally {
      await agent.stop();
    }
  });
});
