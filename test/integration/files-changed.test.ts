/**
 * An operator restores a backup the usual way while the agent keeps running: the app is stopped,
 * `rm app.db-wal app.db-shm`, the backup copied over app.db (in place with cp, or renamed over it),
 * and the app started again. SQLite keeps using the -wal and -shm it opened even once they are
 * unlinked, so a checkpoint through pitr's connections would copy old frames into the restored file
 * and corrupt it, and capture would replay the app's new WAL onto the old pages in the replica.
 * pitr must let go of the database without writing, and start over on the new file.
 *
 * Real processes: the sqlite3 shell is the app (one process per piece of work), the agent is
 * `pitr replicate`. Repeated, because the harm was a race between the operator and the agent.
 */
import assert from 'node:assert/strict';
import { copyFileSync, readdirSync, renameSync, rmSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import Database from 'better-sqlite3';
import { digestDatabase } from '../fixtures/digest.js';
import { parseObjectKey } from '../../src/segment/object-names.js';
import { describeRun, makeTempDir, removeTempDir, runCli, runCliJson, startAgent, trace, waitUntil, type ListOutput, type RestoreOutput } from './helpers.js';

const ROUNDS = Number(process.env['PITR_IT_FILES_CHANGED_ROUNDS'] ?? 10);

const temps: string[] = [];
after(async () => {
  for (const t of temps) await removeTempDir(t);
});

function shell(db: string, sql: string): string {
  return execFileSync('sqlite3', [db, sql], { stdio: ['ignore', 'pipe', 'pipe'] }).toString().trim();
}

/** `count` app transactions (one INSERT each, with a blob so the WAL grows and checkpoints run). */
function appWrites(db: string, from: number, count: number): void {
  const stmts: string[] = [];
  for (let k = from; k < from + count; k++) stmts.push(`INSERT INTO t (k, v) VALUES (${k}, randomblob(${1000 + ((k * 37) % 5000)}));`);
  shell(db, stmts.join('\n'));
}

function digestOf(path: string): string {
  const db = new Database(path, { readonly: true, fileMustExist: true });
  try {
    return digestDatabase(db);
  } finally {
    db.close();
  }
}

describe('the database files changed under a running agent', { timeout: 15 * 60_000 }, () => {
  it(`an operator's restore over the live file, ${ROUNDS} times: the live database stays intact, the replica restores both sides`, async () => {
    const dir = await makeTempDir('pitr-files-changed-');
    temps.push(dir);
    const db = join(dir, 'app.db');
    const replica = join(dir, 'replica');
    shell(db, 'PRAGMA journal_mode=WAL; CREATE TABLE t (k INTEGER PRIMARY KEY, v BLOB);');
    appWrites(db, 1, 20);
    // Small checkpoint threshold: pitr checkpoints often, which is what did the damage.
    const agent = startAgent([db, replica, '--sync-interval', '0', '--state-dir', join(dir, 'state'), '--checkpoint-frames', '8', '--log-format', 'json']);
    let probes = 0;
    const latestDigest = async (): Promise<string | undefined> => {
      const out = join(dir, `probe-${probes++}.db`);
      const r = await runCli(['restore', replica, '-o', out, '--json', '--no-progress']);
      if (r.code !== 0) return undefined;
      const d = digestOf(out);
      rmSync(out);
      return d;
    };
    const beforeReplacement: string[] = [];
    let next = 21;
    try {
      for (let round = 0; round < ROUNDS; round++) {
        const backup = join(dir, `backup-${round}.db`);
        shell(db, `.backup ${backup}`);
        appWrites(db, next, 30);
        next += 30;
        const before = digestOf(db);
        await waitUntil(`round ${round}: the replica to hold the live state`, async () => (await latestDigest()) === before);
        beforeReplacement.push(before);

        // The operator's restore, with the app stopped (no shell runs) and the agent left running.
        rmSync(`${db}-wal`, { force: true });
        rmSync(`${db}-shm`, { force: true });
        if (round % 2 === 0) {
          copyFileSync(backup, db); // in place: the same inode, new content
        } else {
          const staged = join(dir, `staged-${round}.db`);
          copyFileSync(backup, staged);
          renameSync(staged, db); // a new inode at the path
        }
        const restored = digestOf(db);
        // The app starts again and writes.
        appWrites(db, next, 30);
        next += 30;
        const integrity = shell(db, 'PRAGMA integrity_check;');
        assert.equal(integrity, 'ok', `round ${round}: the live database is damaged after the operator's restore: ${integrity}`);
        assert.notEqual(digestOf(db), restored);
        trace(`round ${round} done`);
      }
      const final = digestOf(db);
      await waitUntil('the replica to hold the final state', async () => (await latestDigest()) === final, { timeoutMs: 120_000 });
    } finally {
      const stopped = await agent.stop();
      assert.equal(stopped.code, 0, describeRun(stopped));
      assert.match(stopped.stderr, /continuity lost: .*(was removed|was replaced|written outside SQLite)/);
    }
    assert.equal(shell(db, 'PRAGMA integrity_check;'), 'ok');

    // The replica: every state before a replacement is where a history breaks (the state before a
    // catch-up step, or the end of a generation), and verify finds nothing wrong.
    const list = await runCliJson<ListOutput>(['list', replica, '--json']);
    const breaks: number[] = list.generations.map((g) => g.lastTxid);
    for (const g of list.generations) {
      for (const f of readdirSync(join(replica, 'generations', g.id, 'segments'))) {
        const name = parseObjectKey(`generations/${g.id}/segments/${f}`);
        if (name?.kind === 'segment' && name.catchUp) breaks.push(name.firstTxid - 1);
      }
    }
    assert.ok(breaks.length > list.generations.length, 'the replacements were caught up as steps, not only as new generations');
    const ends = new Set<string>();
    for (const txid of breaks) {
      const out = join(dir, `end-${txid}.db`);
      await runCliJson<RestoreOutput>(['restore', replica, '-o', out, '--txid', String(txid), '--json', '--no-progress']);
      ends.add(digestOf(out));
    }
    beforeReplacement.forEach((d, round) => assert.ok(ends.has(d), `round ${round}: the state before the replacement is not the state before any catch-up step or generation end`));
    const verify = await runCli(['verify', replica, '--no-progress']);
    assert.equal(verify.code, 0, describeRun(verify));
  });
});
