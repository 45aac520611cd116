/**
 * The promise pitr makes, end to end with real processes: while an application writes (spills,
 * VACUUM, its own checkpoints in every mode) and the agent is SIGKILLed mid-run, every committed
 * transaction the replica lists can be restored exactly, by txid and by time.
 */
import assert from 'node:assert/strict';
import { mkdirSync, readdirSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { pathToFileURL } from 'node:url';
import Database from 'better-sqlite3';
import { openAppDatabase } from '../fixtures/app-schema.js';
import { readWriterLog, type WriterLog } from '../fixtures/writer-log.js';
import {
  describeRun,
  expectCliError,
  runCli,
  inspectDatabase,
  catchUpTxids,
  listFilesRecursive,
  makeTempDir,
  removeTempDir,
  runCliJson,
  settleLimit,
  spread,
  startAgent,
  startWriter,
  waitUntil,
  type Agent,
  type DatabaseState,
  type DryRunOutput,
  type GenerationInfo,
  type ListOutput,
  type RestoreOutput,
  type RunResult,
  trace,
  valuesOrFail,
} from './helpers.js';

const COUNT = Number(process.env['PITR_IT_COUNT'] ?? 400);
const SEED = Number(process.env['PITR_IT_SEED'] ?? 20261122);
// Restores are whole processes; two at a time keeps the machine responsive.
const PARALLEL_RESTORES = 2;

interface Restored extends DatabaseState {
  txid: number;
  result: RestoreOutput;
}

describe('round trip: replicate under load with a SIGKILL, then restore every sampled point', { timeout: 15 * 60_000 }, () => {
  let tmp = '';
  let dbPath = '';
  let replicaDir = '';
  let replicaUrl = '';
  let logPath = '';
  let agentArgs: string[] = [];
  let log: WriterLog;
  let list: ListOutput;
  let writerResult: RunResult;
  let killedAgent: RunResult;
  let stoppedAgent: RunResult;
  let downtimeCheckpoint: { busy: number } | undefined;
  let downtimeSeqs: [number, number] = [0, 0];
  const agents: Agent[] = [];
  let outCounter = 0;
  const restoredByTxid = new Map<number, Promise<Restored>>();

  before(
    async () => {
      tmp = await makeTempDir('pitr-round-trip-');
      dbPath = join(tmp, 'app.db');
      replicaDir = join(tmp, 'replica');
      replicaUrl = pathToFileURL(replicaDir).href;
      logPath = join(tmp, 'writer.jsonl');
      mkdirSync(replicaDir);
      mkdirSync(join(tmp, 'out'));
      openAppDatabase(dbPath).close();

      agentArgs = [dbPath, replicaUrl, '--sync-interval', '0', '--snapshot-interval', '3s', '--state-dir', join(tmp, 'state')];
      const first = startAgent(agentArgs);
      trace('agent started');
      agents.push(first);
      await waitUntil('the replica to list a generation', async () => {
        const l = await runCliJson<ListOutput>(['list', replicaUrl, '--json'], { timeoutMs: 30_000 });
        return l.generations.length > 0;
      });

      trace('generation listed; starting the writer');
      const writer = startWriter({ db: dbPath, log: logPath, count: COUNT, seed: SEED, pauseEvery: 10, pauseMs: 150 });
      let writerExited = false;
      void writer.result.then(() => (writerExited = true));

      const killAt = Math.floor(COUNT * 0.4);
      await waitUntil(
        `the writer to commit ${killAt} transactions`,
        async () => writerExited || (await readWriterLog(logPath)).lastSeq >= killAt,
        { timeoutMs: 5 * 60_000 },
      );
      // (The message is built only on failure: awaiting the writer's result would wait for its end.)
      if (writerExited) assert.fail(`writer ended before the agent could be killed mid-run\n${describeRun(await writer.result)}`);

      trace('killing the agent');
      killedAgent = await first.stop('SIGKILL');
      // While the agent is down the app commits a few more transactions, then a second app
      // connection resets the WAL: those commits now exist only merged into the database file, so
      // the restarted agent cannot continue from the WAL: it compares the database with what it
      // captured and ships the difference as one catch-up step, never a guess.
      const seqAtKill = (await readWriterLog(logPath)).lastSeq;
      trace(`agent killed at seq ${seqAtKill}`);
      await waitUntil('the writer to commit while the agent is down', async () => (await readWriterLog(logPath)).lastSeq >= seqAtKill + 3, {
        timeoutMs: 60_000,
      });
      const app = new Database(dbPath);
      try {
        app.pragma('busy_timeout = 5000');
        downtimeCheckpoint = (app.pragma('wal_checkpoint(TRUNCATE)') as { busy: number }[])[0];
      } finally {
        app.close();
      }
      downtimeSeqs = [seqAtKill, (await readWriterLog(logPath)).lastSeq];
      await sleep(1000);
      const second = startAgent(agentArgs);
      trace(`agent restarted; downtime seqs ${downtimeSeqs.join('..')}`);
      agents.push(second);

      writerResult = await writer.result;
      assert.equal(writerResult.code, 0, describeRun(writerResult));
      trace('writer done; stopping the agent');
      stoppedAgent = await second.stop('SIGTERM', 120_000);
      trace('agent stopped');

      // Kept with the temp dir (PITR_KEEP_TMP=1) for whoever debugs a failure.
      writeFileSync(join(tmp, 'agent-1.stderr.jsonl'), killedAgent.stderr);
      writeFileSync(join(tmp, 'agent-2.stderr.jsonl'), stoppedAgent.stderr);
      log = await readWriterLog(logPath);
      list = await runCliJson<ListOutput>(['list', replicaUrl, '--json']);
    },
    { timeout: 10 * 60_000 },
  );

  after(async () => {
    for (const agent of agents) await agent.stop('SIGKILL', 10_000);
    if (tmp !== '') await removeTempDir(tmp);
  });

  /** Restores --txid N (once per N), checks the output alone appeared, and inspects it. */
  function restoreTxid(txid: number): Promise<Restored> {
    let p = restoredByTxid.get(txid);
    if (p === undefined) {
      p = restoreInto(['--txid', String(txid)]).then(({ result, state }) => {
        assert.equal(result.txid, txid, `restore --txid ${txid} reported txid ${result.txid}`);
        return { txid, result, ...state };
      });
      restoredByTxid.set(txid, p);
    }
    return p;
  }

  async function restoreInto(target: string[]): Promise<{ result: RestoreOutput; state: DatabaseState }> {
    const dir = join(tmp, 'out', `r${outCounter++}`);
    mkdirSync(dir);
    const out = join(dir, 'restored.db');
    const result = await runCliJson<RestoreOutput>(['restore', replicaUrl, '-o', out, ...target, '--json']);
    assert.deepEqual(readdirSync(dir), ['restored.db'], `restore ${target.join(' ')} left other files`);
    assert.equal(typeof result.output, 'string');
    assert.equal(Date.parse(result.commitTime), result.commitTimeMs, `commitTime ${result.commitTime} vs ${result.commitTimeMs}`);
    assert.ok(result.snapshotTxid <= result.txid, `snapshotTxid ${result.snapshotTxid} > txid ${result.txid}`);
    assert.ok(Number.isInteger(result.segments) && result.segments >= 0);
    assert.ok(Number.isInteger(result.bytes) && result.bytes > 0);
    // The phases account for the reported duration (each rounded on its own, hence the slack).
    const phases = Object.values(result.phases);
    assert.equal(phases.length, 4);
    assert.ok(phases.every((ms) => Number.isInteger(ms) && ms >= 0), JSON.stringify(result.phases));
    assert.ok(Math.abs(phases.reduce((a, b) => a + b, 0) - result.durationMs) <= 4, `${JSON.stringify(result.phases)} vs ${result.durationMs} ms`);
    const state = inspectDatabase(out);
    assert.equal(state.integrity, 'ok', `integrity_check of restore ${target.join(' ')}`);
    return { result, state };
  }

  /** The restored content must be exactly what the app had when meta.seq was that value. */
  function assertMatchesLog(r: { txid: number; seq: number; digest: string }): void {
    const expected = log.commits.get(r.seq);
    assert.ok(expected !== undefined, `txid ${r.txid} restored meta.seq ${r.seq}, which the writer never logged`);
    assert.equal(r.digest, expected.digest, `txid ${r.txid} (seq ${r.seq}): content differs from the app's at that commit`);
  }

  function generationOf(txid: number): GenerationInfo | undefined {
    return list.generations.find((g) => g.firstTxid <= txid && txid <= g.lastTxid);
  }

  async function dryRun(target: string[]): Promise<DryRunOutput> {
    const dir = join(tmp, 'out', `d${outCounter++}`);
    mkdirSync(dir);
    const out = join(dir, 'never.db');
    const plan = await runCliJson<DryRunOutput>(['restore', replicaUrl, '-o', out, ...target, '--dry-run', '--json']);
    assert.deepEqual(readdirSync(dir), [], `--dry-run ${target.join(' ')} wrote something`);
    return plan;
  }

  it('the writer committed everything and both agents behaved', (t) => {
    t.diagnostic(`seed ${SEED}, ${COUNT} transactions, ${log.events.length} writer events`);
    t.diagnostic(`agent down from seq ${downtimeSeqs[0]}; TRUNCATE at seq ${downtimeSeqs[1]}: ${JSON.stringify(downtimeCheckpoint)}`);
    t.diagnostic(`generations: ${JSON.stringify(list.generations.map((g) => [g.id, g.firstTxid, g.lastTxid]))}`);
    assert.match(writerResult.stdout, new RegExp(`^done ${COUNT}$`, 'm'));
    assert.equal(log.lastSeq, COUNT);
    assert.equal(killedAgent.signal, 'SIGKILL', describeRun(killedAgent));
    assert.ok(!stoppedAgent.timedOut, `agent did not exit after SIGTERM\n${describeRun(stoppedAgent)}`);
    assert.equal(stoppedAgent.code, 0, describeRun(stoppedAgent));
    assert.equal(downtimeCheckpoint?.busy, 0, 'the app could not reset the WAL while the agent was down');
  });

  it('the agents log JSON lines on stderr', () => {
    for (const r of [killedAgent, stoppedAgent]) {
      // A SIGKILL can cut the last line short; every complete line must be one JSON object.
      const lines = r.stderr.split('\n').slice(0, -1).filter((l) => l.trim() !== '');
      for (const line of lines) {
        let parsed: unknown;
        assert.doesNotThrow(() => (parsed = JSON.parse(line)), `agent stderr line is not JSON: ${line}`);
        assert.equal(typeof parsed, 'object', `agent stderr line is not a JSON object: ${line}`);
      }
    }
  });

  it('list: generations are ordered, txids increase across them, times are consistent', () => {
    assert.ok(list.generations.length >= 1);
    let prevLast = -Infinity;
    let prevTime = -Infinity;
    for (const g of list.generations) {
      assert.ok(g.snapshots >= 1, `generation ${g.id} has no snapshot`);
      assert.ok(g.firstTxid <= g.lastTxid, `generation ${g.id}: firstTxid > lastTxid`);
      assert.ok(g.firstTxid > prevLast, `generation ${g.id} starts at txid ${g.firstTxid}, not after ${prevLast}`);
      assert.ok(g.firstCommitTimeMs <= g.lastCommitTimeMs, `generation ${g.id}: times go backwards`);
      assert.ok(g.firstCommitTimeMs >= prevTime, `generation ${g.id} starts before the previous one ended`);
      assert.equal(Date.parse(g.firstCommitTime), g.firstCommitTimeMs);
      assert.equal(Date.parse(g.lastCommitTime), g.lastCommitTimeMs);
      prevLast = g.lastTxid;
      prevTime = g.lastCommitTimeMs;
    }
    // The replica must hold objects in the documented layout.
    const files = listFilesRecursive(replicaDir);
    assert.ok(files.some((f) => /^generations\/[^/]+\/snapshots\/[^/]+\.snap$/.test(f)), 'no snapshot object');
    assert.ok(files.some((f) => /^generations\/[^/]+\/segments\/[^/]+\.seg$/.test(f)), 'no segment object');
  });

  it('restore without a target gives the final state', async () => {
    const { result, state } = await restoreInto([]);
    const last = list.generations.at(-1) as GenerationInfo;
    assert.equal(result.txid, last.lastTxid);
    assert.equal(result.generation, last.id);
    assert.equal(state.seq, COUNT, 'latest restore is not the last commit (was everything captured before SIGTERM?)');
    assertMatchesLog({ txid: result.txid, ...state });
  });

  it('restore --txid at both ends of every generation and spread between matches the app exactly', async () => {
    const txids = list.generations.flatMap((g) => spread(g.firstTxid, g.lastTxid, 17));
    const settled = await settleLimit(txids, PARALLEL_RESTORES, async (txid) => {
      const r = await restoreTxid(txid);
      assertMatchesLog(r);
      return r;
    });
    const restored = valuesOrFail('restore --txid', txids, settled);
    for (const r of restored) {
      const g = generationOf(r.txid) as GenerationInfo;
      assert.equal(r.result.generation, g.id, `txid ${r.txid} restored from generation ${r.result.generation}, listed in ${g.id}`);
      if (r.txid === g.firstTxid) assert.equal(r.result.snapshotTxid, r.txid, `generation ${g.id} does not start with a snapshot`);
    }
    // History never runs backwards: a later txid never holds an earlier commit.
    for (let i = 1; i < restored.length; i++) {
      const [a, b] = [restored[i - 1] as Restored, restored[i] as Restored];
      assert.ok(b.seq >= a.seq, `txid ${b.txid} has seq ${b.seq} < seq ${a.seq} at txid ${a.txid}`);
    }
  });

  it('each generation holds exactly one txid per commit and per VACUUM, but for catch-up steps: none lost, none invented', async () => {
    for (const g of list.generations) {
      // A catch-up step is one txid for everything committed while the agent was down: the rule
      // holds between the generation's ends and its steps.
      const steps = catchUpTxids(replicaDir, g.id);
      const pieces: [number, number][] = [];
      let from = g.firstTxid;
      for (const s of steps) {
        if (s - 1 > from) pieces.push([from, s - 1]);
        from = s;
      }
      if (g.lastTxid > from) pieces.push([from, g.lastTxid]);
      for (const [a, b] of pieces) {
        const [first, last] = await Promise.all([restoreTxid(a), restoreTxid(b)]);
        // The only WAL commits besides data transactions are the app's VACUUMs (rollbacks and
        // checkpoints commit nothing). A VACUUM logged at the piece's first or last seq may
        // fall on either side of the boundary, hence a range.
        const vacuums = log.events.filter((e) => e.event === 'vacuum');
        const inside = vacuums.filter((e) => e.seq > first.seq && e.seq < last.seq).length;
        const edges = vacuums.filter((e) => e.seq === first.seq || e.seq === last.seq).length;
        const commits = last.seq - first.seq;
        const txids = b - a;
        assert.ok(
          commits + inside <= txids && txids <= commits + inside + edges,
          `generation ${g.id}: txids ${a}..${b} (${txids}) for seqs ${first.seq}..${last.seq} (${commits} commits) and ${inside}..${inside + edges} VACUUMs`,
        );
      }
    }
  });

  it('the downtime became one catch-up step in the same generation, holding what was committed meanwhile', async () => {
    // The commits between the SIGKILL and the WAL reset are in no WAL the agent could read: the
    // restart compared the database with its fingerprint and shipped the difference as one step.
    assert.equal(list.generations.length, 1, `expected one generation: ${JSON.stringify(list.generations)}`);
    const steps = catchUpTxids(replicaDir);
    assert.ok(steps.length >= 1, 'no catch-up step after the downtime reset');
    const [before, step] = await Promise.all([restoreTxid((steps[0] as number) - 1), restoreTxid(steps[0] as number)]);
    assertMatchesLog(before);
    assertMatchesLog(step);
    assert.ok(before.seq <= downtimeSeqs[0] && step.seq >= downtimeSeqs[1], `step ${steps[0]} covers seqs ${before.seq}..${step.seq}, the downtime was ${downtimeSeqs.join('..')}`);
  });

  it('consecutive txids are at most one commit apart, but for catch-up steps', async () => {
    const steps = new Set(catchUpTxids(replicaDir));
    const starts = list.generations
      .filter((g) => g.lastTxid > g.firstTxid)
      .flatMap((g) => spread(g.firstTxid, g.lastTxid - 1, 4))
      .filter((x) => !steps.has(x + 1));
    const settled = await settleLimit(starts, PARALLEL_RESTORES, async (x) => {
      const [a, b] = [await restoreTxid(x), await restoreTxid(x + 1)];
      assertMatchesLog(a);
      assertMatchesLog(b);
      const step = b.seq - a.seq;
      assert.ok(step === 0 || step === 1, `txid ${a.txid} -> ${b.txid} moves seq ${a.seq} -> ${b.seq}`);
    });
    valuesOrFail('consecutive txids', starts.map((x) => `${x}->${x + 1}`), settled);
  });

  /**
   * --to T must pick the last transaction committed at or before T (checked against its dry run,
   * the next txid's commit time and every generation), and restore the same content as --txid.
   */
  async function checkTimeTarget(t: number): Promise<number> {
    const iso = new Date(t).toISOString();
    const plan = await dryRun(['--to', iso]);
    assert.equal(plan.dryRun, true);
    assert.ok(plan.commitTimeMs <= t, `--to ${iso} chose txid ${plan.txid} committed at ${plan.commitTime}`);
    assertPlanShape(plan);
    // Nothing later may qualify: the next txid in the same generation is after T...
    const g = list.generations.find((x) => x.id === plan.generation);
    assert.ok(g !== undefined, `plan names unknown generation ${plan.generation}`);
    if (plan.txid + 1 <= g.lastTxid) {
      const next = await dryRun(['--txid', String(plan.txid + 1)]);
      assert.ok(next.commitTimeMs > t, `--to ${iso} chose txid ${plan.txid}, but txid ${plan.txid + 1} committed at ${next.commitTime}`);
    }
    // ...and no later generation had started by T.
    for (const later of list.generations) {
      if (later.firstCommitTimeMs <= t) assert.ok(plan.txid >= later.firstTxid, `--to ${iso} ignored generation ${later.id}`);
    }
    const viaTime = await restoreInto(['--to', iso]);
    assert.equal(viaTime.result.txid, plan.txid, `--to ${iso}: dry run said txid ${plan.txid}, restore did ${viaTime.result.txid}`);
    const viaTxid = await restoreTxid(plan.txid);
    assert.equal(viaTime.state.digest, viaTxid.digest, `--to ${iso} and --txid ${plan.txid} restored different content`);
    assertMatchesLog({ txid: plan.txid, ...viaTime.state });
    return plan.txid;
  }

  it('restore --to T inside a generation picks the last transaction committed at or before T', async () => {
    const perGeneration = Math.max(3, Math.ceil(10 / list.generations.length));
    const times = list.generations.flatMap((g) => spread(g.firstCommitTimeMs, g.lastCommitTimeMs, perGeneration));
    const txids = valuesOrFail('restore --to', times.map((t) => new Date(t).toISOString()), await settleLimit(times, PARALLEL_RESTORES, checkTimeTarget));
    assert.ok(new Set(txids).size > 1, 'every time target resolved to the same txid');
  });

  it('restore --to T between two generations is refused and lists the windows', async (t) => {
    // pitr never guesses across a break: between two generations the agent was not capturing, so
    // the app's state at T may include commits no replica holds. README documents the refusal.
    const gaps: number[] = [];
    for (let i = 1; i < list.generations.length; i++) {
      const [a, b] = [list.generations[i - 1] as GenerationInfo, list.generations[i] as GenerationInfo];
      if (b.firstCommitTimeMs - a.lastCommitTimeMs >= 2) gaps.push(Math.floor((a.lastCommitTimeMs + b.firstCommitTimeMs) / 2));
    }
    if (gaps.length === 0) return t.skip('no time gap between generations in this run');
    for (const gap of gaps) {
      const out = join(tmp, 'out', `gap-${gap}.db`);
      const r = await runCli(['restore', replicaUrl, '-o', out, '--to', new Date(gap).toISOString()]);
      const err = expectCliError(r, 'TARGET_OUT_OF_WINDOW');
      assert.match(err.message, /between two restorable windows/);
      for (const g of list.generations) assert.ok(err.message.includes(g.id), `the error lists generation ${g.id}`);
      assert.deepEqual(readdirSync(dirname(out)).filter((f) => f.includes(`gap-${gap}`)), [], 'nothing written for a refused restore');
    }
  });

  /** A plan is a snapshot plus segments that together cover (snapshot.txid, txid] without gaps. */
  function assertPlanShape(plan: DryRunOutput): void {
    const files = new Set(listFilesRecursive(replicaDir));
    assert.ok(plan.snapshot.txid <= plan.txid);
    assert.ok(plan.snapshot.key.endsWith('.snap') && files.has(plan.snapshot.key), `snapshot key ${plan.snapshot.key} not in replica`);
    let covered = plan.snapshot.txid;
    for (const s of [...plan.segments].sort((a, b) => a.firstTxid - b.firstTxid)) {
      assert.ok(s.key.endsWith('.seg') && files.has(s.key), `segment key ${s.key} not in replica`);
      assert.ok(s.firstTxid <= covered + 1, `plan for txid ${plan.txid} has a gap before ${s.key}`);
      covered = Math.max(covered, s.lastTxid);
    }
    assert.ok(covered >= plan.txid, `plan for txid ${plan.txid} stops at ${covered}`);
  }
});
