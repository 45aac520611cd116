/**
 * No gaps across kill -9 (issue 20, acceptance case 2). The agent is SIGKILLed and restarted 8
 * times at random moments (start-up, catch-up and capture included) under a write-heavy app whose
 * writer runs its own checkpoints in all four modes, and which checkpoints once more while the
 * agent is down, so the WAL the agent left off in is gone or restarted by the time it is back.
 * pitr must carry the one generation through with catch-up steps: one generation at the end, every
 * restore at a time the agent was up (and at every catch-up txid) a committed state of the app,
 * the latest restore the final database.
 *
 * The moments come from a seeded RNG: PITR_IT_SEED replays the same choices (the seed is printed).
 */
import assert from 'node:assert/strict';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, describe, it, type TestContext } from 'node:test';
import Database from 'better-sqlite3';
import { openAppDatabase } from '../fixtures/app-schema.js';
import { xorshift32 } from '../fixtures/rng.js';
import { CHECKPOINT_MODES, readWriterLog } from '../fixtures/writer-log.js';
import {
  describeRun,
  makeTempDir,
  removeTempDir,
  runCliJson,
  settleLimit,
  spread,
  startAgent,
  startWriter,
  trace,
  valuesOrFail,
  waitUntil,
  type Agent,
  type ListOutput,
  type RunResult,
} from './helpers.js';
import { describeEvents, digestOf, generationEvents, matchesRecord, replicaObjects, restoreChecked, waitReplicaHolds, type Restored } from './catch-up-support.js';

const CYCLES = 8;
const SEED = Number(process.env['PITR_IT_SEED'] ?? Date.now() % 2 ** 31);
/** Commits per writer run: the app is restarted (a new process, its baseline re-logged) until the cycles are done. */
const WRITER_RUN = 60;
const PARALLEL_RESTORES = 2;

const temps: string[] = [];
after(async () => {
  for (const t of temps) await removeTempDir(t);
});

interface Stint {
  /** When the agent said which generation it captures into (ms); undefined when killed before. */
  upAt: number | undefined;
  /** When the kill was sent (ms); undefined for the last agent, stopped with SIGTERM. */
  killedAt: number | undefined;
  result: RunResult;
}

describe('catch-up across kill -9 (issue 20)', { timeout: 10 * 60_000 }, () => {
  it(`2. ${CYCLES} kill -9 and restarts at random moments under a write-heavy app with its own checkpoints: one generation, every restore exact`, async (t: TestContext) => {
    t.diagnostic(`seed ${SEED} (PITR_IT_SEED=${SEED} replays the same moments and workload)`);
    const rand = xorshift32(SEED);
    const between = (lo: number, hi: number): number => lo + (rand() % (hi - lo + 1));
    const dir = await makeTempDir('pitr-catch-up-kill-');
    temps.push(dir);
    const out = join(dir, 'out');
    mkdirSync(out);
    const db = join(dir, 'app.db');
    const replica = join(dir, 'replica');
    const logPath = join(dir, 'writer.jsonl');
    openAppDatabase(db).close();
    const args = [db, replica, '--sync-interval', '0', '--state-dir', join(dir, 'state'), '--log-format', 'json'];

    const stints: Stint[] = [];
    const downtimeCheckpoints: string[] = [];
    const agents: Agent[] = [];
    let cyclesDone = false;
    let writerRuns = 0;
    const launch = (): { agent: Agent; upAt: () => number | undefined } => {
      const agent = startAgent(args);
      agents.push(agent);
      const upAt = (): number | undefined => {
        const e = generationEvents(agent.output().stderr);
        const line = e.continuing[0] ?? e.newGenerations[0];
        return line === undefined ? undefined : Date.parse(String(line.time));
      };
      return { agent, upAt };
    };
    try {
      let current = launch();
      await waitReplicaHolds(replica, out, digestOf(db), 'the first snapshot');

      // The app: one writer process after another until the cycles are done.
      const workload = (async (): Promise<void> => {
        for (let run = 0; ; run++) {
          const r = await startWriter({ db, log: logPath, count: WRITER_RUN, seed: SEED + run, pauseEvery: 5, pauseMs: 30 }).result;
          if (r.code !== 0) throw new Error(`writer run ${run} failed\n${describeRun(r)}`);
          writerRuns++;
          if (cyclesDone) return;
        }
      })();
      workload.catch(() => {}); // awaited below; a failure must not go unhandled meanwhile

      for (let cycle = 0; cycle < CYCLES; cycle++) {
        // kill -9 at a random moment: one time in four during start-up (which reads the database
        // and ships a catch-up step), otherwise once the agent is up, after 0-1.5 s of capture.
        if (rand() % 4 === 0) {
          await sleep(between(0, 1500));
        } else {
          const { agent, upAt } = current;
          await waitUntil(`agent ${agents.length - 1} to be up`, () => upAt() !== undefined || agent.child.exitCode !== null, { timeoutMs: 60_000 });
          await sleep(between(0, 1500));
        }
        const killedAt = Date.now();
        const killed = await current.agent.stop('SIGKILL');
        assert.equal(killed.signal, 'SIGKILL', describeRun(killed));
        stints.push({ upAt: current.upAt(), killedAt, result: killed });

        // Down: the app goes on, and checkpoints once more from a connection of its own, so the
        // WAL is backfilled and restarted (or truncated, or removed) behind the agent's position.
        await sleep(between(100, 700));
        const mode = CHECKPOINT_MODES[(cycle + (SEED % 4)) % 4]!;
        const conn = new Database(db);
        try {
          conn.pragma('busy_timeout = 5000');
          downtimeCheckpoints.push(`${mode} ${JSON.stringify(conn.pragma(`wal_checkpoint(${mode})`))}`);
        } finally {
          conn.close();
        }
        await sleep(between(100, 700));
        current = launch();
        trace(`cycle ${cycle}: agent restarted`);
      }
      cyclesDone = true;
      await workload;
      const final = digestOf(db);
      await waitReplicaHolds(replica, out, final, 'the final database', 120_000);
      const stopped = await current.agent.stop('SIGTERM');
      stints.push({ upAt: current.upAt(), killedAt: undefined, result: stopped });
      assert.equal(stopped.code, 0, `the last agent stops cleanly\n${describeRun(stopped)}`);
    } finally {
      cyclesDone = true;
      // Kept with the temp dir (PITR_KEEP_TMP=1) for whoever debugs a failure.
      for (const [i, a] of agents.entries()) writeFileSync(join(dir, `agent-${i}.stderr.jsonl`), (await a.stop('SIGKILL', 10_000)).stderr);
    }
    const log = await readWriterLog(logPath);
    const record = new Map([...log.commits].map(([seq, c]) => [seq, c.digest] as const));
    t.diagnostic(`${writerRuns} writer runs, ${log.lastSeq} commits; writer checkpoints: ${log.events.filter((e) => e.event === 'checkpoint').map((e) => e['mode']).join(' ')}`);
    t.diagnostic(`downtime checkpoints: ${downtimeCheckpoints.join('; ')}`);

    // What each restarted agent said: never a new generation.
    const events = stints.map((s) => generationEvents(s.result.stderr));
    const restarts = events.slice(1);
    const said = restarts.map((e, i) => `agent ${i + 1} (${stints[i + 1]!.upAt === undefined ? 'killed before it was up' : 'up'}):\n${describeEvents(e)}`).join('\n');
    for (const line of said.split('\n')) t.diagnostic(line);
    const newGenerations = restarts.flatMap((e) => e.newGenerations);
    assert.deepEqual(newGenerations.map((l) => l['reason']), [], `no restart starts a new generation:\n${said}`);
    assert.ok(restarts.some((e) => e.catchUps.length > 0), `the downtimes' changes came as catch-up steps:\n${said}`);

    const list = await runCliJson<ListOutput>(['list', replica, '--json']);
    assert.equal(list.generations.length, 1, `one generation at the end: ${JSON.stringify(list.generations)}`);
    const g = list.generations[0]!;
    const steps = replicaObjects(replica).catchUps;
    t.diagnostic(`catch-up steps in the replica: ${steps.map((s) => s.firstTxid).join(', ')}`);
    assert.ok(steps.length > 0, 'catch-up steps in the replica');
    assert.ok(steps.every((s) => s.generation === g.id && s.firstTxid > g.firstTxid && s.firstTxid <= g.lastTxid), 'catch-up steps inside the generation');

    // Every catch-up txid, the txid before it, and txids spread over the generation: each a
    // committed state of the app, and history never runs backwards.
    const txids = [...new Set([...spread(g.firstTxid, g.lastTxid, 12), ...steps.flatMap((s) => [s.firstTxid - 1, s.firstTxid])])].sort((a, b) => a - b);
    const byTxid = valuesOrFail(
      'restore --txid',
      txids,
      await settleLimit(txids, PARALLEL_RESTORES, (txid) => restoreChecked(replica, out, ['--txid', String(txid)])),
    );
    const inexact = byTxid.map((r) => matchesRecord(record, r)).filter((m): m is string => m !== undefined);
    assert.deepEqual(inexact, [], 'restores by txid that are not a committed state of the app');
    assertMonotonic(byTxid, 'txid');

    // Times when an agent was up: two inside each stint that got that far.
    const times = stints
      .filter((s): s is Stint & { upAt: number; killedAt: number } => s.upAt !== undefined && s.killedAt !== undefined && s.killedAt > s.upAt)
      .flatMap((s) => [s.upAt + between(0, s.killedAt - s.upAt), s.upAt + between(0, s.killedAt - s.upAt)])
      .sort((a, b) => a - b);
    t.diagnostic(`${times.length} restore times in ${stints.filter((s) => s.upAt !== undefined).length} stints the agent was up`);
    const isoTimes = times.map((ms) => new Date(ms).toISOString());
    const byTime = valuesOrFail(
      'restore --to',
      isoTimes,
      await settleLimit(isoTimes, PARALLEL_RESTORES, (iso) => restoreChecked(replica, out, ['--to', iso])),
    );
    const inexactTimes = byTime.map((r, i) => matchesRecord(record, r) && `--to ${isoTimes[i]}: ${matchesRecord(record, r)}`).filter((m): m is string => typeof m === 'string');
    assert.deepEqual(inexactTimes, [], 'restores at times the agent was up that are not a committed state of the app');
    assertMonotonic(byTime, 'time');

    const latest = await restoreChecked(replica, out, []);
    assert.equal(latest.state.digest, digestOf(db), 'the latest restore is the final database');
    assert.equal(latest.state.seq, log.lastSeq);
    assert.equal(latest.result.txid, g.lastTxid);
  });
});

/** A later target never restores an earlier commit. */
function assertMonotonic(restored: readonly Restored[], by: string): void {
  for (let i = 1; i < restored.length; i++) {
    const [a, b] = [restored[i - 1]!, restored[i]!];
    assert.ok(b.state.seq >= a.state.seq && b.result.txid >= a.result.txid, `by ${by}: txid ${b.result.txid} holds seq ${b.state.seq}, after txid ${a.result.txid} with seq ${a.state.seq}`);
  }
}
