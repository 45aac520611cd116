/**
 * A full spool disk must not stall capture for good. The state dir sits on a small tmpfs and the
 * only replica (a directory on a second tmpfs, filled to the brim so every upload fails with ENOSPC)
 * is down while the app writes far more than the spool can hold. Capture fills the spool and fails
 * (expected); once the replica has room again, the spool drains, capture resumes without a restart,
 * in the same generation, and every transaction restores exactly.
 *
 * Real full disks: needs root to mount tmpfs (CI runs as root); skipped elsewhere, saying why.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import Database from 'better-sqlite3';
import { describeRun, makeTempDir, mapLimit, removeTempDir, runCli, runCliJson, spread, startAgent, waitUntil, type ListOutput, type RestoreOutput } from './helpers.js';

const mounts: string[] = [];
const temps: string[] = [];
after(async () => {
  for (const m of mounts.reverse()) {
    try {
      execFileSync('umount', [m], { stdio: 'ignore' });
    } catch {
      execFileSync('umount', ['-l', m], { stdio: 'ignore' });
    }
  }
  for (const t of temps) await removeTempDir(t);
});

/** A tmpfs of `size` at `path`, or the reason it cannot be had here. */
function mountTmpfs(path: string, size: string): string | undefined {
  mkdirSync(path, { recursive: true });
  try {
    execFileSync('mount', ['-t', 'tmpfs', '-o', `size=${size}`, 'tmpfs', path], { stdio: ['ignore', 'ignore', 'pipe'] });
  } catch (err) {
    return `cannot mount a tmpfs here (needs root): ${(err as Error).message.split('\n')[0]}`;
  }
  mounts.push(path);
  return undefined;
}

/** Fill the file system at `dir` until it refuses another byte; returns the filler's path. */
function fill(dir: string): string {
  const path = join(dir, 'filler');
  // cat stops at ENOSPC (and says so, with a non-zero exit): that is the point.
  execFileSync('sh', ['-c', `cat /dev/zero > '${path}' 2>/dev/null || true`]);
  return path;
}

function shell(db: string, sql: string): void {
  execFileSync('sqlite3', [db, sql], { stdio: ['ignore', 'ignore', 'pipe'] });
}

function rowCount(path: string): number {
  const db = new Database(path, { readonly: true, fileMustExist: true });
  try {
    return db.prepare('SELECT count(*) FROM t').pluck().get() as number;
  } finally {
    db.close();
  }
}

describe('the spool disk full while the only replica is down', { timeout: 10 * 60_000 }, () => {
  it('capture resumes without a restart once the replica is back, and every txid restores exactly', async (t) => {
    const dir = await makeTempDir('pitr-spool-full-');
    temps.push(dir);
    const state = join(dir, 'state');
    const replicaDir = join(dir, 'replica');
    const why = mountTmpfs(state, '3m') ?? mountTmpfs(replicaDir, '64m');
    if (why) {
      t.skip(why);
      return;
    }
    const db = join(dir, 'app.db');
    shell(db, 'PRAGMA journal_mode=WAL; CREATE TABLE t (k INTEGER PRIMARY KEY, v BLOB);');
    shell(db, 'INSERT INTO t (v) VALUES (randomblob(1000));');
    const agent = startAgent([db, replicaDir, '--sync-interval', '0', '--state-dir', state, '--checkpoint-frames', '64', '--log-format', 'json']);
    try {
      await waitUntil('the first snapshot in the replica', async () => (await runCliJson<ListOutput>(['list', replicaDir, '--json'])).generations.length > 0);
      // The replica goes down: no room for another object.
      const filler = fill(replicaDir);
      // ~12 MB of incompressible commits, four times what the spool can hold.
      for (let batch = 0; batch < 6; batch++) {
        const stmts = Array.from({ length: 40 }, () => 'INSERT INTO t (v) VALUES (randomblob(50000));');
        shell(db, stmts.join('\n'));
      }
      await waitUntil('capture to hit the full spool', () => /ENOSPC|no space/i.test(agent.output().stderr), { timeoutMs: 120_000 });
      const live = rowCount(db);
      // The replica is back.
      rmSync(filler);
      let probe = 0;
      await waitUntil(
        'the replica to hold every commit',
        async () => {
          const out = join(dir, `probe-${probe++}.db`);
          const r = await runCli(['restore', replicaDir, '-o', out, '--no-progress']);
          if (r.code !== 0) return false;
          const n = rowCount(out);
          rmSync(out);
          return n === live;
        },
        { timeoutMs: 240_000, intervalMs: 1000 },
      );
    } finally {
      const stopped = await agent.stop('SIGTERM', 120_000);
      assert.equal(stopped.code, 0, describeRun(stopped));
      assert.doesNotMatch(stopped.stderr, /continuity lost/);
    }
    // Restores read from the replica's tmpfs into the test's directory: that is not full.
    const list = await runCliJson<ListOutput>(['list', replicaDir, '--json']);
    assert.equal(list.generations.length, 1, 'no new generation: capture resumed where it stopped');
    const gen = list.generations[0]!;
    const base = rowCount(join(dir, 'app.db'));
    assert.equal(gen.lastTxid - gen.firstTxid, base - 1, 'one txid per commit after the snapshot (which held 1 row)');
    await mapLimit(spread(gen.firstTxid, gen.lastTxid, 12), 2, async (txid) => {
      const out = join(dir, `txid-${txid}.db`);
      await runCliJson<RestoreOutput>(['restore', replicaDir, '-o', out, '--txid', String(txid), '--json', '--no-progress']);
      assert.equal(rowCount(out), 1 + txid - gen.firstTxid, `txid ${txid}`);
    });
  });
});
