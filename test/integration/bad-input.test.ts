/**
 * Every way a user or a damaged replica can make a command fail must fail loudly, with the
 * documented code, and must leave nothing at the output path: a half-written or unverified
 * database that looks like a backup is worse than none.
 */
import assert from 'node:assert/strict';
import { cpSync, mkdirSync, readdirSync, readFileSync, statSync, truncateSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import Database from 'better-sqlite3';
import { openAppDatabase } from '../fixtures/app-schema.js';
import { readWriterLog, type WriterLog } from '../fixtures/writer-log.js';
import {
  describeRun,
  expectCliError,
  inspectDatabase,
  listFilesRecursive,
  makeTempDir,
  outputLeftovers,
  removeTempDir,
  runCli,
  runCliJson,
  startAgent,
  startWriter,
  waitUntil,
  type Agent,
  type DryRunOutput,
  type GenerationInfo,
  type ListOutput,
  type RunResult,
} from './helpers.js';

const WRITES = 30;

describe('bad input and damaged replicas', { timeout: 10 * 60_000 }, () => {
  let tmp = '';
  let replicaDir = '';
  let log: WriterLog;
  let list: ListOutput;
  let agentResult: RunResult;
  let replicaFiles: string[] = [];
  let agent: Agent | undefined;
  let dirCounter = 0;

  before(
    async () => {
      tmp = await makeTempDir('pitr-bad-input-');
      const dbPath = join(tmp, 'app.db');
      const logPath = join(tmp, 'writer.jsonl');
      // A plain path this time (round-trip uses file://): both spellings are part of the contract.
      replicaDir = join(tmp, 'replica');
      mkdirSync(replicaDir);
      openAppDatabase(dbPath).close();

      agent = startAgent([dbPath, replicaDir, '--sync-interval', '0', '--state-dir', join(tmp, 'state')]);
      await waitUntil('the replica to list a generation', async () => {
        const l = await runCliJson<ListOutput>(['list', replicaDir, '--json'], { timeoutMs: 30_000 });
        return l.generations.length > 0;
      });
      // No app checkpoints: they would only stall against the agent's read lock here.
      const writer = await startWriter({ db: dbPath, log: logPath, count: WRITES, seed: 7, checkpoints: 'none' }).result;
      assert.equal(writer.code, 0, describeRun(writer));
      agentResult = await agent.stop('SIGTERM', 120_000);

      log = await readWriterLog(logPath);
      list = await runCliJson<ListOutput>(['list', replicaDir, '--json']);
      replicaFiles = listFilesRecursive(replicaDir);
    },
    { timeout: 5 * 60_000 },
  );

  after(async () => {
    await agent?.stop('SIGKILL', 10_000);
    if (tmp !== '') await removeTempDir(tmp);
  });

  /** A fresh, empty directory and an output path inside it, so leftovers are easy to see. */
  function freshOut(): string {
    const dir = join(tmp, 'out', `case${dirCounter++}`);
    mkdirSync(dir, { recursive: true });
    return join(dir, 'restored.db');
  }

  /** Runs a restore that must fail with `code`, and checks it left nothing behind. */
  async function failingRestore(replica: string, extra: string[], code: string): Promise<{ message: string; run: RunResult }> {
    const out = freshOut();
    const run = await runCli(['restore', replica, '-o', out, ...extra]);
    const err = expectCliError(run, code);
    assert.deepEqual(outputLeftovers(out), [], `failed restore left files at its output\n${describeRun(run)}`);
    return { message: err.message, run };
  }

  function firstGeneration(): GenerationInfo {
    return list.generations[0] as GenerationInfo;
  }

  it('setup: a short real replication, stopped cleanly', () => {
    assert.ok(!agentResult.timedOut, `agent did not exit after SIGTERM\n${describeRun(agentResult)}`);
    assert.equal(agentResult.code, 0, describeRun(agentResult));
    assert.equal(log.lastSeq, WRITES);
    assert.ok(replicaFiles.some((f) => f.endsWith('.seg')), `no segment in the replica: ${replicaFiles.join(', ')}`);
  });

  it('a missing replica directory is REPLICA_NOT_FOUND', async () => {
    await failingRestore(join(tmp, 'no-such-replica'), [], 'REPLICA_NOT_FOUND');
  });

  it('an empty replica directory is REPLICA_EMPTY', async () => {
    const empty = join(tmp, 'empty-replica');
    mkdirSync(empty);
    await failingRestore(empty, [], 'REPLICA_EMPTY');
  });

  it('the intact replica restores (so the failures below are about the damage)', async () => {
    const out = freshOut();
    const run = await runCli(['restore', replicaDir, '-o', out]);
    assert.equal(run.code, 0, describeRun(run));
    const state = inspectDatabase(out);
    assert.equal(state.integrity, 'ok');
    assert.equal(state.seq, WRITES);
    assert.equal(state.digest, log.commits.get(WRITES)?.digest);
  });

  /** Copies the replica, damages the object `pick` chooses from the latest plan, expects OBJECT_CORRUPT naming it. */
  async function expectCorruptionDetected(pick: (plan: DryRunOutput) => string, damage: (file: string) => void): Promise<void> {
    const copy = join(tmp, `damaged-${dirCounter++}`);
    cpSync(replicaDir, copy, { recursive: true });
    const plan = await runCliJson<DryRunOutput>(['restore', copy, '-o', freshOut(), '--dry-run', '--json']);
    const key = pick(plan);
    damage(join(copy, key));
    const { message } = await failingRestore(copy, [], 'OBJECT_CORRUPT');
    assert.ok(message.includes(key), `OBJECT_CORRUPT message does not name ${key}: ${message}`);
  }

  function lastSegment(plan: DryRunOutput): string {
    const seg = [...plan.segments].sort((a, b) => a.lastTxid - b.lastTxid).at(-1);
    assert.ok(seg !== undefined, `the latest restore plan uses no segment: ${JSON.stringify(plan)}`);
    return seg.key;
  }

  function flipMiddleByte(file: string): void {
    const bytes = readFileSync(file);
    const i = Math.floor(bytes.length / 2);
    bytes[i] = (bytes[i] as number) ^ 0xff;
    writeFileSync(file, bytes);
  }

  it('one flipped byte in a segment is OBJECT_CORRUPT, naming the object', async () => {
    await expectCorruptionDetected(lastSegment, flipMiddleByte);
  });

  it('a segment truncated to half is OBJECT_CORRUPT, naming the object', async () => {
    await expectCorruptionDetected(lastSegment, (file) => truncateSync(file, Math.floor(statSync(file).size / 2)));
  });

  it('a segment missing its last byte is OBJECT_CORRUPT, naming the object', async () => {
    await expectCorruptionDetected(lastSegment, (file) => truncateSync(file, statSync(file).size - 1));
  });

  it('one flipped byte in a snapshot is OBJECT_CORRUPT, naming the object', async () => {
    await expectCorruptionDetected((plan) => plan.snapshot.key, flipMiddleByte);
  });

  it('--to before the window is TARGET_OUT_OF_WINDOW and says what the window is', async () => {
    const g = firstGeneration();
    const before = new Date(g.firstCommitTimeMs - 3_600_000).toISOString();
    const { message } = await failingRestore(replicaDir, ['--to', before], 'TARGET_OUT_OF_WINDOW');
    assert.ok(
      message.includes(g.firstCommitTime) || message.includes(String(g.firstCommitTimeMs)),
      `message does not print the window (starting ${g.firstCommitTime}): ${message}`,
    );
  });

  it('--txid past the last transaction is TARGET_OUT_OF_WINDOW', async () => {
    const last = (list.generations.at(-1) as GenerationInfo).lastTxid;
    await failingRestore(replicaDir, ['--txid', String(last + 1000)], 'TARGET_OUT_OF_WINDOW');
  });

  it('an existing output is OUTPUT_EXISTS and untouched; --force replaces it', async () => {
    const out = freshOut();
    writeFileSync(out, 'precious\n');
    const run = await runCli(['restore', replicaDir, '-o', out]);
    expectCliError(run, 'OUTPUT_EXISTS');
    assert.equal(readFileSync(out, 'utf8'), 'precious\n', 'restore modified an existing output without --force');
    assert.deepEqual(outputLeftovers(out), ['restored.db'], 'restore left files beside the existing output');

    const forced = await runCli(['restore', replicaDir, '-o', out, '--force']);
    assert.equal(forced.code, 0, describeRun(forced));
    assert.deepEqual(outputLeftovers(out), ['restored.db']);
    const state = inspectDatabase(out);
    assert.equal(state.integrity, 'ok');
    assert.equal(state.seq, WRITES);
  });

  it('replicate on a directory exits 1 with DB_IS_DIRECTORY', async () => {
    const dir = join(tmp, 'a-directory.db');
    mkdirSync(dir);
    const run = await runCli(['replicate', dir, join(tmp, 'replica-for-dir')], { timeoutMs: 30_000 });
    assert.ok(!run.timedOut, `replicate kept running\n${describeRun(run)}`);
    assert.equal(run.code, 1, describeRun(run));
    assert.match(run.stderr, /DB_IS_DIRECTORY/, describeRun(run));
  });

  it('replicate on a rollback-journal database exits 1 with DB_NOT_WAL and leaves it alone', async () => {
    const path = join(tmp, 'rollback.db');
    const db = new Database(path);
    db.pragma('journal_mode = DELETE');
    db.exec("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT); INSERT INTO t (v) VALUES ('x');");
    db.close();
    const run = await runCli(['replicate', path, join(tmp, 'replica-for-rollback')], { timeoutMs: 30_000 });
    assert.ok(!run.timedOut, `replicate kept running\n${describeRun(run)}`);
    assert.equal(run.code, 1, describeRun(run));
    assert.match(run.stderr, /DB_NOT_WAL/, describeRun(run));
    // Without --enable-wal pitr must not convert the app's database.
    const check = new Database(path, { readonly: true });
    try {
      assert.equal(check.pragma('journal_mode', { simple: true }), 'delete');
    } finally {
      check.close();
    }
  });

  /** Each with the error code it must give. */
  const garbageRestoreFlags: [string[], string][] = [
    [['--txid', 'abc'], 'USAGE'],
    [['--to', 'yesterday'], 'BAD_TIME'],
    [['--txid', '1.5'], 'USAGE'],
    [['--to', '2026-11-22T10:15:00Z', '--txid', '1'], 'USAGE'],
    [['--no-such-flag'], 'USAGE'],
  ];

  it('garbage restore flags fail and write nothing', async () => {
    for (const [flags] of garbageRestoreFlags) {
      const out = freshOut();
      const run = await runCli(['restore', replicaDir, '-o', out, ...flags], { timeoutMs: 60_000 });
      assert.ok(!run.timedOut && run.code !== 0 && run.code !== null, `restore ${flags.join(' ')} did not fail\n${describeRun(run)}`);
      assert.deepEqual(outputLeftovers(out), [], `restore ${flags.join(' ')} left files\n${describeRun(run)}`);
    }
  });

  it('garbage restore flags are reported as USAGE, BAD_TIME errors', async () => {
    for (const [flags, code] of garbageRestoreFlags) {
      const run = await runCli(['restore', replicaDir, '-o', freshOut(), ...flags], { timeoutMs: 60_000 });
      expectCliError(run, code);
    }
  });

  it('garbage replicate flags fail before replicating', async () => {
    const cases: [string[], string][] = [
      [['--sync-interval', 'fast'], 'BAD_DURATION'],
      [['--snapshot-interval', '-3s'], 'BAD_DURATION'],
      [['--retention', 'forever'], 'BAD_DURATION'],
      [['--nice', '20'], 'USAGE'],
      [['--nice', 'low'], 'USAGE'],
      [['--snapshot-wal-ratio', 'abc'], 'USAGE'],
      [['--snapshot-wal-ratio', '-1'], 'USAGE'],
      [['--snapshot-wal-min', '12zz'], 'BAD_SIZE'],
    ];
    for (const [flags, code] of cases) {
      const replica = join(tmp, `replica-garbage-${dirCounter++}`);
      const run = await runCli(['replicate', join(tmp, 'app.db'), replica, ...flags], { timeoutMs: 30_000 });
      assert.ok(!run.timedOut, `replicate ${flags.join(' ')} kept running\n${describeRun(run)}`);
      assert.notEqual(run.code, 0, describeRun(run));
      expectCliError(run, code);
    }
  });

  it('none of the failed restores changed the replica', () => {
    assert.deepEqual(listFilesRecursive(replicaDir), replicaFiles);
    assert.ok(readdirSync(replicaDir).length > 0);
  });
});
