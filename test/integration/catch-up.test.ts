/**
 * No gaps across restarts (issue 20). While the agent is down, the app keeps committing and its
 * WAL goes away (the sqlite3 shell's exit checkpoints and deletes it), so the saved WAL position
 * cannot be continued. pitr compares the database with the fingerprint it kept as of the last
 * captured txid and ships the difference as one catch-up step in the same generation (a txid of its
 * own, committed at the restart, key `<txid>-<txid>-<time>-<time>.catchup.seg`); nothing changed:
 * no step at all; the fingerprint missing or unusable: a new generation, with the reason logged.
 *
 * Real processes: the sqlite3 shell is the app (one process per commit, each closing the
 * database), the agent is `pitr replicate` stopped with SIGTERM, the replica a directory. Every
 * restored database is compared with the app's own record of what it committed (digest by seq).
 */
import assert from 'node:assert/strict';
import { copyFileSync, existsSync, mkdirSync, rmSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { after, describe, it, type TestContext } from 'node:test';
import {
  describeRun,
  listFilesRecursive,
  makeTempDir,
  removeTempDir,
  runCliJson,
  settleLimit,
  startAgent,
  valuesOrFail,
  waitUntil,
  type Agent,
  type GenerationInfo,
  type ListOutput,
  type RunResult,
} from './helpers.js';
import {
  describeEvents,
  diagnoseEvents,
  digestOf,
  generationEvents,
  matchesRecord,
  range,
  replicaObjects,
  restoreChecked,
  sqlite3,
  waitReplicaHolds,
  ShellApp,
  type GenerationEvents,
  type ReplicaObjects,
  type Restored,
} from './catch-up-support.js';

// Restores are whole processes; two at a time on two cores.
const PARALLEL_RESTORES = 2;

const temps: string[] = [];
after(async () => {
  for (const t of temps) await removeTempDir(t);
});

interface Setup {
  dir: string;
  db: string;
  replica: string;
  state: string;
  out: string;
  args: string[];
  record: Map<number, string>;
}

async function setup(name: string): Promise<Setup> {
  const dir = await makeTempDir(`pitr-catch-up-${name}-`);
  temps.push(dir);
  const out = join(dir, 'out');
  mkdirSync(out);
  const db = join(dir, 'app.db');
  const replica = join(dir, 'replica');
  const state = join(dir, 'state');
  return { dir, db, replica, state, out, args: [db, replica, '--sync-interval', '0', '--state-dir', state, '--log-format', 'json'], record: new Map() };
}

async function list(s: Setup): Promise<ListOutput> {
  return runCliJson<ListOutput>(['list', s.replica, '--json']);
}

/** Starts the agent and waits until it has said which generation it captures into. */
async function start(s: Setup): Promise<Agent> {
  const agent = startAgent(s.args);
  await waitUntil('the agent to start or continue a generation', () => {
    const e = generationEvents(agent.output().stderr);
    return e.newGenerations.length + e.continuing.length > 0 || agent.child.exitCode !== null;
  });
  if (agent.child.exitCode !== null) assert.fail(`the agent exited at start\n${describeRun(await agent.result)}`);
  return agent;
}

async function stop(agent: Agent): Promise<RunResult> {
  const r = await agent.stop('SIGTERM');
  assert.equal(r.code, 0, `the agent stops cleanly on SIGTERM\n${describeRun(r)}`);
  return r;
}

/** Each of `txids` restored (two at a time), in that order; fails listing every restore that failed. */
async function restoreTxids(s: Setup, txids: readonly number[]): Promise<Restored[]> {
  const settled = await settleLimit(txids, PARALLEL_RESTORES, (txid) => restoreChecked(s.replica, s.out, ['--txid', String(txid)]));
  return valuesOrFail('restore --txid', txids, settled);
}

function allTxids(gens: readonly GenerationInfo[]): number[] {
  return gens.flatMap((g) => range(g.firstTxid, g.lastTxid));
}

/** The seq each txid restored, and every restore's content checked against the app's record. */
function assertExact(s: Setup, restored: readonly Restored[], expectedSeqs: readonly number[], what: string): void {
  const got = restored.map((r) => `${r.result.txid}:${r.state.seq}`);
  const want = restored.map((r, i) => `${r.result.txid}:${String(expectedSeqs[i])}`);
  assert.deepEqual(got, want, `${what}: txid:seq restored vs the app's commits`);
  const wrong = restored.map((r) => matchesRecord(s.record, r)).filter((m): m is string => m !== undefined);
  assert.deepEqual(wrong, [], `${what}: restores that differ from the app's record`);
}

/**
 * What issue 20 promises after a restart that found the database changed: no new generation, one
 * catch-up step (logged, counting its pages, and in the replica under its own key), the same
 * generation continued. Returns the step's txid and commit time.
 */
function oneCatchUpStep(events: GenerationEvents, l: ListOutput, objects: ReplicaObjects): { txid: number; time: number } {
  assert.deepEqual(events.newGenerations, [], `the restart must not start a new generation:\n${describeEvents(events)}`);
  assert.equal(events.catchUps.length, 1, `one catch-up step logged:\n${describeEvents(events)}`);
  assert.ok(events.continuing.length >= 1, `the restart continues the generation:\n${describeEvents(events)}`);
  const line = events.catchUps[0]!;
  assert.ok(typeof line['pages'] === 'number' && line['pages'] > 0, `the catch-up line counts the pages it shipped: ${JSON.stringify(line)}`);
  assert.equal(typeof line['reason'], 'string', `the catch-up line says why: ${JSON.stringify(line)}`);
  assert.equal(l.generations.length, 1, `one generation: ${JSON.stringify(l.generations)}`);
  assert.equal(objects.catchUps.length, 1, `one .catchup.seg object: ${objects.catchUps.map((o) => o.key).join(', ')}`);
  const step = objects.catchUps[0]!;
  assert.equal(step.generation, l.generations[0]!.id);
  assert.equal(step.firstTxid, line['txid'], 'the log names the catch-up step by its txid');
  return { txid: step.firstTxid, time: step.firstTime };
}

function stateFiles(s: Setup): string {
  const files = listFilesRecursive(s.state);
  return files.length === 0 ? '(empty)' : files.join(', ');
}

describe('catch-up across restarts (issue 20)', { timeout: 10 * 60_000 }, () => {
  it('1. SIGTERM, 20 sqlite3-shell writes, restart: one generation, one catch-up step, every txid exact', async (t: TestContext) => {
    const s = await setup('sigterm');
    const app = ShellApp.create(s.db, s.record);
    const first = await start(s);
    for (let i = 0; i < 10; i++) app.insert();
    await waitReplicaHolds(s.replica, s.out, app.digest(), `seq ${app.seq}`);
    await stop(first);
    const stoppedAt = Date.now();

    const seqBefore = app.seq;
    for (let i = 0; i < 20; i++) app.insert(1 + (i % 3));
    const seqAfterDowntime = app.seq;
    assert.ok(!existsSync(`${s.db}-wal`), 'precondition: the last sqlite3 process checkpointed and removed the WAL');
    const restartAt = Date.now();

    const second = await start(s);
    await waitReplicaHolds(s.replica, s.out, app.digest(), `seq ${app.seq} (after the downtime)`);
    for (let i = 0; i < 10; i++) app.insert();
    await waitReplicaHolds(s.replica, s.out, app.digest(), `seq ${app.seq}`);
    const stopped = await stop(second);

    const events = generationEvents(stopped.stderr);
    diagnoseEvents(t, 'the restarted agent said', events);
    const l = await list(s);
    const step = oneCatchUpStep(events, l, replicaObjects(s.replica));
    // One txid per app commit on either side, and one for the whole downtime, committed at the restart.
    assert.equal(step.txid, l.generations[0]!.firstTxid + seqBefore + 1, 'the catch-up step comes right after the last commit captured before the stop');
    assert.ok(step.time >= restartAt, `the catch-up step is committed at the restart (${step.time} < ${restartAt})`);

    const expectedSeqs = [...range(0, seqBefore), seqAfterDowntime, ...range(seqAfterDowntime + 1, app.seq)];
    const txids = allTxids(l.generations);
    assert.equal(txids.length, expectedSeqs.length, `txids ${txids.join(',')} for ${expectedSeqs.length} states`);
    const restored = await restoreTxids(s, txids);
    assertExact(s, restored, expectedSeqs, 'every txid');
    const at = (txid: number): Restored => restored[txids.indexOf(txid)]!;
    assert.equal(at(step.txid).state.seq, seqAfterDowntime, 'the catch-up txid holds the state after the 20 writes');
    assert.equal(at(step.txid - 1).state.seq, seqBefore, 'the txid below it holds the state before them');

    // A time inside the downtime: the state before the catch-up.
    const inside = Math.floor((stoppedAt + restartAt) / 2);
    const down = await restoreChecked(s.replica, s.out, ['--to', new Date(inside).toISOString()]);
    assert.equal(down.result.txid, step.txid - 1, `--to ${new Date(inside).toISOString()} (the agent was down) restores the txid before the catch-up`);
    assert.equal(matchesRecord(s.record, down), undefined);
    assert.equal(down.state.seq, seqBefore);
  });

  it('3. the database replaced by another file while the agent was down: restores either side exact, and the log says what pitr did', async (t: TestContext) => {
    const s = await setup('replaced');
    const app = ShellApp.create(s.db, s.record);
    const first = await start(s);
    for (let i = 0; i < 10; i++) app.insert(2);
    await waitReplicaHolds(s.replica, s.out, app.digest(), `seq ${app.seq}`);
    await stop(first);
    const seqBefore = app.seq;

    // Another SQLite database (its own seqs, more and other rows, the same page size), copied over
    // the app's file in place the way an operator restores a backup.
    const otherPath = join(s.dir, 'other.db');
    const other = ShellApp.create(otherPath, s.record, { seq: 1000, rows: 400 });
    assert.equal(sqlite3(otherPath, 'PRAGMA page_size;'), sqlite3(s.db, 'PRAGMA page_size;'), 'precondition: the same page size');
    const inode = statSync(s.db).ino;
    rmSync(`${s.db}-wal`, { force: true });
    rmSync(`${s.db}-shm`, { force: true });
    copyFileSync(otherPath, s.db);
    assert.equal(statSync(s.db).ino, inode, 'precondition: cp wrote the same inode');
    const replaced = ShellApp.attach(s.db, s.record, other.seq); // checks the content is other.db's

    const second = await start(s);
    await waitReplicaHolds(s.replica, s.out, replaced.digest(), `the replacement (seq ${replaced.seq})`);
    for (let i = 0; i < 5; i++) replaced.insert();
    await waitReplicaHolds(s.replica, s.out, replaced.digest(), `seq ${replaced.seq}`);
    const stopped = await stop(second);

    const events = generationEvents(stopped.stderr);
    diagnoseEvents(t, 'the restarted agent said', events);
    assert.ok(events.catchUps.length + events.newGenerations.length >= 1, `the log says what pitr did (a catch-up step or a new generation):\n${describeEvents(events)}`);
    for (const g of events.newGenerations) assert.ok(typeof g['reason'] === 'string' && g['reason'].length > 0, `a new generation says why: ${JSON.stringify(g)}`);
    const l = await list(s);
    const objects = replicaObjects(s.replica);
    if (events.newGenerations.length === 0) {
      assert.equal(l.generations.length, 1, `a catch-up keeps one generation: ${JSON.stringify(l.generations)}`);
      assert.equal(objects.catchUps.length, 1, 'the catch-up step is in the replica');
    } else {
      assert.equal(l.generations.length, 2, `the new generation is the only one added: ${JSON.stringify(l.generations)}`);
    }

    const expectedSeqs = [...range(0, seqBefore), ...range(other.seq, replaced.seq)];
    const txids = allTxids(l.generations);
    assert.equal(txids.length, expectedSeqs.length, `txids ${txids.join(',')} for ${expectedSeqs.length} states`);
    assertExact(s, await restoreTxids(s, txids), expectedSeqs, 'every txid');
    const latest = await restoreChecked(s.replica, s.out, []);
    assert.equal(latest.state.digest, digestOf(s.db), 'the latest restore is the database');
  });

  it('4. VACUUM while the agent was down, shrinking the file: a catch-up step, exact either side', async (t: TestContext) => {
    const s = await setup('vacuum');
    const app = ShellApp.create(s.db, s.record);
    const first = await start(s);
    for (let i = 0; i < 6; i++) app.insert(300);
    await waitReplicaHolds(s.replica, s.out, app.digest(), `seq ${app.seq}`);
    await stop(first);
    const seqBefore = app.seq;

    // Most rows deleted, then VACUUM: each its own sqlite3 process, so the file is checkpointed
    // and truncated to the new size before the agent comes back.
    const sizeBefore = statSync(s.db).size;
    app.commit('DELETE FROM t WHERE k % 10 != 0;');
    sqlite3(s.db, 'VACUUM;');
    app.note(); // VACUUM keeps the content: the record at this seq must still hold
    const sizeAfter = statSync(s.db).size;
    assert.ok(sizeAfter < sizeBefore / 2, `precondition: VACUUM shrank the file (${sizeBefore} -> ${sizeAfter} bytes)`);
    assert.ok(!existsSync(`${s.db}-wal`), 'precondition: the WAL is gone');
    const seqAfterDowntime = app.seq;

    const second = await start(s);
    await waitReplicaHolds(s.replica, s.out, app.digest(), `seq ${app.seq} (after the VACUUM)`);
    for (let i = 0; i < 3; i++) app.insert(5);
    await waitReplicaHolds(s.replica, s.out, app.digest(), `seq ${app.seq}`);
    const stopped = await stop(second);

    const events = generationEvents(stopped.stderr);
    diagnoseEvents(t, 'the restarted agent said', events);
    const l = await list(s);
    const step = oneCatchUpStep(events, l, replicaObjects(s.replica));
    assert.equal(step.txid, l.generations[0]!.firstTxid + seqBefore + 1, 'the catch-up step comes right after the last commit captured before the stop');
    const expectedSeqs = [...range(0, seqBefore), seqAfterDowntime, ...range(seqAfterDowntime + 1, app.seq)];
    assertExact(s, await restoreTxids(s, allTxids(l.generations)), expectedSeqs, 'every txid');

    const latest = await restoreChecked(s.replica, s.out, []);
    assert.equal(latest.state.integrity, 'ok');
    assert.equal(latest.state.digest, digestOf(s.db), 'the latest restore is the database');
    const pages = (p: string): number => Number(sqlite3(p, 'PRAGMA page_count;'));
    assert.equal(pages(latest.path), pages(s.db), 'the restore has the shrunken size');
    assert.equal(statSync(latest.path).size, pages(s.db) * Number(sqlite3(s.db, 'PRAGMA page_size;')), 'no pages past the end of the restored file');
  });

  it('the fingerprint deleted while the agent was down: a new generation, saying why', async (t: TestContext) => {
    const s = await setup('no-fingerprint');
    const app = ShellApp.create(s.db, s.record);
    const first = await start(s);
    for (let i = 0; i < 5; i++) app.insert();
    await waitReplicaHolds(s.replica, s.out, app.digest(), `seq ${app.seq}`);
    await stop(first);
    const seqBefore = app.seq;
    for (let i = 0; i < 5; i++) app.insert();
    assert.ok(!existsSync(`${s.db}-wal`), 'precondition: the WAL is gone');

    const fingerprints = listFilesRecursive(s.state).filter((f) => /fingerprint/i.test(f));
    assert.ok(fingerprints.length > 0, `the state dir holds fingerprint files (names matching /fingerprint/i); it holds: ${stateFiles(s)}`);
    for (const f of fingerprints) rmSync(join(s.state, f), { force: true });

    const second = await start(s);
    await waitReplicaHolds(s.replica, s.out, app.digest(), `seq ${app.seq}`);
    const stopped = await stop(second);

    const events = generationEvents(stopped.stderr);
    diagnoseEvents(t, 'the restarted agent said', events);
    assert.equal(events.newGenerations.length, 1, `a new generation:\n${describeEvents(events)}`);
    assert.match(String(events.newGenerations[0]!['reason']), /fingerprint/i, 'the reason names the fingerprint');
    assert.deepEqual(events.catchUps, [], 'no catch-up step without a fingerprint');
    assert.deepEqual(replicaObjects(s.replica).catchUps, []);
    const l = await list(s);
    assert.equal(l.generations.length, 2, `two generations: ${JSON.stringify(l.generations)}`);
    // Before: each commit; after: the new generation's snapshot holds the downtime's commits.
    assertExact(s, await restoreTxids(s, allTxids(l.generations)), [...range(0, seqBefore), app.seq], 'every txid');
  });

  it('a restart with no change at all: no catch-up step, no new generation, no snapshot upload', async (t: TestContext) => {
    const s = await setup('no-change');
    const app = ShellApp.create(s.db, s.record);
    const first = await start(s);
    for (let i = 0; i < 5; i++) app.insert();
    await waitReplicaHolds(s.replica, s.out, app.digest(), `seq ${app.seq}`);
    await stop(first);
    // The app opens and closes the database without writing: the last close checkpoints and
    // removes the WAL, so the saved WAL position cannot be continued; the content is unchanged.
    assert.equal(sqlite3(s.db, 'SELECT count(*) > 0 FROM t;'), '1');
    assert.ok(!existsSync(`${s.db}-wal`), 'precondition: the WAL is gone');
    const before = listFilesRecursive(s.replica).filter((f) => f.startsWith('generations/'));
    const lastBefore = (await list(s)).generations.at(-1)!.lastTxid;

    const second = await start(s);
    // One commit after the restart: its capture shows the agent is done starting up.
    app.insert();
    await waitReplicaHolds(s.replica, s.out, app.digest(), `seq ${app.seq}`);
    const stopped = await stop(second);

    const events = generationEvents(stopped.stderr);
    diagnoseEvents(t, 'the restarted agent said', events);
    assert.deepEqual(events.newGenerations, [], `no new generation:\n${describeEvents(events)}`);
    assert.deepEqual(events.catchUps, [], `no catch-up step:\n${describeEvents(events)}`);
    const added = listFilesRecursive(s.replica)
      .filter((f) => f.startsWith('generations/'))
      .filter((f) => !before.includes(f));
    const objects = replicaObjects(s.replica);
    assert.deepEqual(objects.catchUps, [], 'no .catchup.seg object');
    assert.deepEqual(added.filter((f) => f.endsWith('.snap')), [], 'no snapshot uploaded');
    const l = await list(s);
    assert.equal(l.generations.length, 1, `one generation: ${JSON.stringify(l.generations)}`);
    assert.equal(l.generations[0]!.lastTxid, lastBefore + 1, 'the one commit after the restart is the next txid');
    const txids = allTxids(l.generations);
    assert.equal(txids.length, app.seq + 1, `txids ${txids.join(',')}: one per commit, none for a catch-up`);
    assertExact(s, await restoreTxids(s, txids), range(0, app.seq), 'every txid');
  });
});
