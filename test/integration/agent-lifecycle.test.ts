/**
 * Agent lifecycle against the real CLI: continuity across clean and unclean restarts, waiting for
 * a database that does not exist yet, retention, and several replicas with one of them broken.
 * The test process plays the app (its own better-sqlite3 connection); the agent is a child process.
 */
import assert from 'node:assert/strict';
import { mkdirSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, describe, it } from 'node:test';
import type Database from 'better-sqlite3';
import { openAppDatabase, readSeq, appCommit } from '../fixtures/app-schema.js';
import { digestDatabase } from '../fixtures/digest.js';
import {
  inspectDatabase,
  makeTempDir,
  removeTempDir,
  runCliJson,
  spread,
  startAgent,
  waitUntil,
  type ListOutput,
  type RestoreOutput,
} from './helpers.js';

const temps: string[] = [];
after(async () => {
  for (const t of temps) await removeTempDir(t);
});

async function tempDir(): Promise<string> {
  const t = await makeTempDir('pitr-lifecycle-');
  temps.push(t);
  return t;
}

const commit = appCommit;

async function list(replica: string): Promise<ListOutput> {
  return runCliJson<ListOutput>(['list', replica, '--json']);
}

/** Wait until the replica's latest restorable state is the app's current content. */
async function waitCaughtUp(replica: string, db: Database.Database, dir: string): Promise<RestoreOutput> {
  const want = digestDatabase(db);
  let n = 0;
  return waitUntil(`replica ${replica} to reach seq ${readSeq(db)}`, async () => {
    const out = join(dir, `probe-${n++}.db`);
    const r = await runCliJson<RestoreOutput>(['restore', replica, '-o', out, '--json']);
    return inspectDatabase(out).digest === want ? r : undefined;
  });
}

describe('agent lifecycle', () => {
  it('keeps one generation across a clean stop and a SIGKILL when continuity is provable', async () => {
    const dir = await tempDir();
    const dbPath = join(dir, 'app.db');
    const replica = join(dir, 'replica');
    const db = openAppDatabase(dbPath);
    try {
      const args = [dbPath, replica, '--sync-interval', '0', '--state-dir', join(dir, 'state')];
      let agent = startAgent(args);
      // Commits made before the agent's first snapshot are folded into it: wait for it first.
      await waitUntil('the first generation', async () => (await list(replica).catch(() => undefined))?.generations.length === 1);
      commit(db, 20);
      await waitCaughtUp(replica, db, dir);
      const stopped = await agent.stop('SIGTERM');
      assert.equal(stopped.code, 0, `clean stop exits 0; stderr: ${stopped.stderr}`);

      // Written while no agent runs, and not checkpointed: still provably in the WAL.
      commit(db, 10);
      const seqWhileDown = readSeq(db);
      agent = startAgent(args);
      const caught = await waitCaughtUp(replica, db, dir);
      let l = await list(replica);
      assert.equal(l.generations.length, 1, 'a clean restart continues the generation');
      assert.equal(caught.txid, l.generations[0]?.lastTxid);

      // A SIGKILL between passes loses nothing either: the position is saved after each pass.
      commit(db, 5);
      await waitCaughtUp(replica, db, dir);
      await agent.stop('SIGKILL');
      commit(db, 5);
      agent = startAgent(args);
      await waitCaughtUp(replica, db, dir);
      l = await list(replica);
      assert.equal(l.generations.length, 1, 'a restart after SIGKILL with an intact WAL continues the generation');
      const gen = l.generations[0];
      assert.ok(gen);
      // One txid per commit: the snapshot, then 20 + 10 + 5 + 5 app commits.
      assert.equal(gen.lastTxid - gen.firstTxid, 40);

      // A transaction committed while the agent was down is individually restorable.
      const txidDown = gen.firstTxid + 30;
      const out = join(dir, 'down.db');
      await runCliJson<RestoreOutput>(['restore', replica, '-o', out, '--txid', String(txidDown), '--json']);
      const state = inspectDatabase(out);
      assert.equal(state.seq, seqWhileDown);
      assert.equal(state.integrity, 'ok');
      assert.equal((await agent.stop('SIGTERM')).code, 0);
    } finally {
      db.close();
    }
  });

  it('waits for a database that does not exist yet, then replicates it', async () => {
    const dir = await tempDir();
    const dbPath = join(dir, 'later.db');
    const replica = join(dir, 'replica');
    const agent = startAgent([dbPath, replica, '--sync-interval', '0', '--state-dir', join(dir, 'state')]);
    await waitUntil('the agent to say it waits', () => agent.output().stderr.includes('waiting for the database'));
    const db = openAppDatabase(dbPath);
    try {
      commit(db, 3);
      await waitCaughtUp(replica, db, dir);
      assert.equal((await agent.stop('SIGTERM')).code, 0);
    } finally {
      db.close();
    }
  });

  it('retention removes what is older than the window and keeps the window restorable', async () => {
    const dir = await tempDir();
    const dbPath = join(dir, 'app.db');
    const replica = join(dir, 'replica');
    const db = openAppDatabase(dbPath);
    const agent = startAgent([
      dbPath,
      replica,
      '--sync-interval',
      '0',
      '--snapshot-interval',
      '1s',
      '--retention',
      '2s',
      '--retention-check-interval',
      '1s',
      '--state-dir',
      join(dir, 'state'),
    ]);
    try {
      commit(db, 3);
      await waitCaughtUp(replica, db, dir);
      // Keep committing until retention has dropped the generation's first snapshot.
      const trimmed = await waitUntil(
        'retention to remove the oldest objects',
        async () => {
          commit(db, 1);
          const l = await list(replica);
          const g = l.generations[0];
          return g && g.firstTxid > 1 ? l : undefined;
        },
        { timeoutMs: 60_000, intervalMs: 300 },
      );
      const g = trimmed.generations[0];
      assert.ok(g);
      assert.equal(trimmed.generations.length, 1);
      // The oldest kept point and the newest both restore exactly.
      for (const txid of [g.firstTxid, g.lastTxid]) {
        const out = join(dir, `keep-${txid}.db`);
        const r = await runCliJson<RestoreOutput>(['restore', replica, '-o', out, '--txid', String(txid), '--json']);
        assert.equal(r.txid, txid);
        assert.equal(inspectDatabase(out).integrity, 'ok');
      }
      assert.equal((await agent.stop('SIGTERM')).code, 0);
    } finally {
      db.close();
    }
  });

  it('takes another snapshot once the WAL since the last one outgrows the database (--snapshot-wal-ratio)', async () => {
    const dir = await tempDir();
    const dbPath = join(dir, 'app.db');
    const replica = join(dir, 'replica');
    const db = openAppDatabase(dbPath);
    const agent = startAgent([
      dbPath,
      replica,
      '--sync-interval',
      '0',
      '--snapshot-interval',
      '0',
      '--snapshot-wal-ratio',
      '1',
      '--snapshot-wal-min',
      '256KiB',
      '--state-dir',
      join(dir, 'state'),
    ]);
    try {
      await waitUntil('the first generation', async () => (await list(replica).catch(() => undefined))?.generations.length === 1);
      assert.equal((await list(replica)).generations[0]?.snapshots, 1, 'one snapshot at generation start');
      // Each commit writes ~10 KiB of WAL and grows the database by ~1 KiB: every ~30 rounds the
      // WAL since the last snapshot passes the database size (and 256 KiB). The agent spaces these
      // snapshots by 9x the last one's duration, so how many rounds it takes depends on the
      // machine's load: commit until two more snapshots came (bounded), never a fixed count.
      await waitUntil(
        'two snapshots more, taken as the WAL grew',
        async () => {
          for (let i = 0; i < 10; i++) {
            commit(db, 10);
            await sleep(50);
          }
          return ((await list(replica)).generations[0]?.snapshots ?? 0) >= 3;
        },
        { timeoutMs: 120_000, intervalMs: 0 },
      );
      const latest = await waitCaughtUp(replica, db, dir);
      const l = await list(replica);
      assert.equal(l.generations.length, 1, 'WAL-triggered snapshots stay in the generation');
      const g = l.generations[0];
      assert.ok(g);
      assert.ok(g.snapshots >= 3, `snapshots taken as the WAL grew: ${g.snapshots}`);
      assert.ok(latest.snapshotTxid > g.firstTxid, `the latest restore starts from a later snapshot, not the first (${latest.snapshotTxid})`);
      // Every point stays restorable exactly, before, between and after those snapshots.
      for (const txid of spread(g.firstTxid, g.lastTxid, 9)) {
        const out = join(dir, `at-${txid}.db`);
        const r = await runCliJson<RestoreOutput>(['restore', replica, '-o', out, '--txid', String(txid), '--json']);
        assert.equal(r.txid, txid);
        const state = inspectDatabase(out);
        assert.equal(state.seq, txid - g.firstTxid, `txid ${txid} holds the app's commit ${txid - g.firstTxid}`);
        assert.equal(state.integrity, 'ok');
      }
      assert.equal((await agent.stop('SIGTERM')).code, 0);
    } finally {
      db.close();
    }
  });

  it('ships to every replica; a broken replica never holds back capture or the others', async () => {
    const dir = await tempDir();
    const dbPath = join(dir, 'app.db');
    const good = join(dir, 'good');
    const second = join(dir, 'second');
    const broken = join(dir, 'broken');
    // Writable at start (an unwritable replica is refused then), every put under it fails after.
    mkdirSync(broken);
    writeFileSync(join(broken, 'generations'), 'not a directory');
    mkdirSync(second);
    const db = openAppDatabase(dbPath);
    const agent = startAgent([dbPath, good, second, broken, '--sync-interval', '0', '--shutdown-timeout', '1s', '--state-dir', join(dir, 'state')]);
    try {
      commit(db, 15);
      const a = await waitCaughtUp(good, db, dir);
      const b = await waitCaughtUp(second, db, dir);
      assert.equal(a.txid, b.txid);
      const stopped = await agent.stop('SIGTERM');
      assert.equal(stopped.code, 1, 'exit 1: the broken replica could not be brought up to date');
      const warnings = stopped.stderr.split('\n').filter((l) => l.includes('upload to replica failed'));
      assert.equal(warnings.length, 1, `an outage is logged once, not per retry:\n${warnings.join('\n')}`);
    } finally {
      db.close();
    }
  });
});

describe('spool cap', () => {
  it('drops what only an unreachable replica needs; the replica resumes from a fresh snapshot', async () => {
    const dir = await tempDir();
    const dbPath = join(dir, 'app.db');
    const good = join(dir, 'good');
    const flaky = join(dir, 'flaky');
    // Writable at start (an unwritable replica is refused then), every put fails until fixed.
    mkdirSync(flaky);
    writeFileSync(join(flaky, 'generations'), 'not a directory yet');
    const db = openAppDatabase(dbPath);
    const agent = startAgent([dbPath, good, flaky, '--sync-interval', '0', '--spool-max-size', '16KiB', '--state-dir', join(dir, 'state')]);
    try {
      await waitUntil('the first generation', async () => (await list(good).catch(() => undefined))?.generations.length === 1);
      // ~2 KiB of WAL per commit, far less once the spool has compressed it (how much less is the
      // codec's business): commit until the spool passes the cap while the flaky replica is down.
      for (let i = 0; i < 200 && !agent.output().stderr.includes('spool is over its cap'); i++) {
        commit(db, 10);
        await new Promise((r) => setTimeout(r, 50));
      }
      await waitCaughtUp(good, db, dir);
      await waitUntil('the agent to report the spool cap', () => agent.output().stderr.includes('spool is over its cap'));
      const spoolBytes = dirBytes(join(dir, 'state', 'spool'));
      assert.ok(spoolBytes < 256 * 1024, `spool stays near its cap (${spoolBytes} bytes)`);
      // Capture and the healthy replica are unaffected: one generation, one unbroken window.
      const g = await list(good);
      assert.equal(g.generations.length, 1);

      // The replica comes back: it resumes from the newest generation and catches up.
      rmSync(join(flaky, 'generations'));
      commit(db, 3);
      await waitCaughtUp(flaky, db, dir);
      await waitCaughtUp(good, db, dir);
      // The returning replica starts from a fresh snapshot: its window begins after the gap.
      const f = await list(flaky);
      const fg = f.generations[0];
      assert.ok(fg && fg.id === g.generations[0]?.id && fg.firstTxid > (g.generations[0]?.firstTxid ?? 0));
      const stopped = await agent.stop('SIGTERM');
      assert.equal(stopped.code, 0, stopped.stderr);
    } finally {
      db.close();
    }
  });
});

function dirBytes(path: string): number {
  let total = 0;
  for (const e of readdirSync(path, { withFileTypes: true })) {
    const p = join(path, e.name);
    total += e.isDirectory() ? dirBytes(p) : statSync(p).size;
  }
  return total;
}
