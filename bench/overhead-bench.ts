/**
 * Issue row 3: what the agent costs the app. The same write workload, as fast as the app can
 * commit, with and without the agent running, in alternating runs on fresh copies of one database.
 */
import { statSync } from 'node:fs';
import { join } from 'node:path';
import type { BenchRow } from './bench-row.js';
import { openStorage } from '../src/storage/open-storage.js';
import { FileReplicaWatcher, logProblems, percentile, removeDir, round, startAgent, startWriter, tempDir, waitForSnapshot, type CommitLog } from './agent-harness.js';
import { copyDb, makeSeed } from './lag-bench.js';

const RUN_MS = Number(process.env['PITR_BENCH_OVERHEAD_MS'] ?? 4000);
/**
 * One more pair, long enough to show the steady state: whether capture keeps up with a writer this
 * fast, whether the WAL resets succeed (else the WAL grows, and the app slows as it does), and
 * what a WAL-ratio snapshot's pin costs. The short runs see only the start.
 */
const SUSTAINED_MS = Number(process.env['PITR_BENCH_OVERHEAD_SUSTAINED_MS'] ?? 20_000);
const PAIRS = Number(process.env['PITR_BENCH_OVERHEAD_PAIRS'] ?? 3);

interface Run {
  agent: boolean;
  maxWalMB: number;
  /** Commits not yet in the replica when the writer finished (agent runs). */
  backlog: number;
  commits: number;
  commitsPerS: number;
  /** Commits/s over the run's last quarter (its steady state, for the sustained runs). */
  tailPerS: number;
  p50Us: number;
  p99Us: number;
  generations: number;
  problems: string;
}

function stats(log: CommitLog): { commitsPerS: number; tailPerS: number; p50Us: number; p99Us: number } {
  const n = log.k.length;
  // From the end of the first commit to the end of the last: the writer's own time, no startup.
  const first = log.endUs[0]!;
  const last = log.endUs[n - 1]!;
  const spanS = (last - first) / 1e6;
  const tailFrom = last - (last - first) / 4;
  const tail = log.endUs.filter((t) => t >= tailFrom).length;
  return { commitsPerS: (n - 1) / spanS, tailPerS: (tail - 1) / (spanS / 4), p50Us: percentile(log.latUs, 50), p99Us: percentile(log.latUs, 99) };
}

async function oneRun(seedPath: string, d: string, withAgent: boolean, ms: number): Promise<Run> {
  const db = copyDb(seedPath, d);
  const replica = join(d, 'replica');
  const agent = withAgent ? startAgent([db, replica, '--state-dir', join(d, 'state')]) : undefined;
  let watcher: FileReplicaWatcher | undefined;
  let snapTxid = 0;
  if (agent) {
    const storage = await openStorage(replica);
    snapTxid = (await waitForSnapshot(storage, 120_000, agent)).txid;
    await storage.close();
    watcher = new FileReplicaWatcher(replica);
  }
  const writer = startWriter(['--db', db, '--mode', 'max', '--duration-ms', String(ms)], join(d, 'commits.json'));
  await writer.ready;
  let maxWal = 0;
  const sampler = setInterval(() => {
    try {
      maxWal = Math.max(maxWal, statSync(`${db}-wal`).size);
    } catch {
      // no WAL yet
    }
  }, 100);
  writer.go();
  const log = await writer.done;
  clearInterval(sampler);
  let generations = 0;
  let problems = '';
  let backlog = 0;
  if (agent) {
    // The agent's catch-up after the writer stops is not part of the app's cost: stop it hard.
    const gens = new Set(watcher!.snapshots().map((s) => s.generation));
    generations = gens.size;
    backlog = gens.size === 1 ? log.k.length - (watcher!.maxTxid - snapTxid) : NaN;
    agent.child.kill('SIGKILL');
    await agent.exited;
    watcher!.close();
    problems = logProblems(agent.stderr());
  }
  removeDir(d);
  return { agent: withAgent, ...stats(log), generations, problems, maxWalMB: maxWal / 1e6, backlog, commits: log.k.length };
}

export async function benchOverhead(): Promise<BenchRow[]> {
  const dir = tempDir('overhead');
  try {
    const seed = makeSeed(dir);
    const runs: Run[] = [];
    for (let i = 0; i < PAIRS * 2; i++) {
      const withAgent = i % 2 === 1;
      process.stderr.write(`  overhead: run ${i + 1}/${PAIRS * 2}, ${withAgent ? 'with' : 'without'} the agent, ${RUN_MS / 1000} s...\n`);
      runs.push(await oneRun(seed.path, join(dir, `run-${i}`), withAgent, RUN_MS));
    }
    const sustained: Run[] = [];
    for (const withAgent of [false, true]) {
      process.stderr.write(`  overhead: sustained run ${withAgent ? 'with' : 'without'} the agent, ${SUSTAINED_MS / 1000} s...\n`);
      sustained.push(await oneRun(seed.path, join(dir, `sustained-${withAgent ? 1 : 0}`), withAgent, SUSTAINED_MS));
    }
    const [s0, s1] = sustained as [Run, Run];
    const without = runs.filter((r) => !r.agent);
    const withA = runs.filter((r) => r.agent);
    const mean = (rs: Run[], f: (r: Run) => number): number => rs.reduce((s, r) => s + f(r), 0) / rs.length;
    const tput0 = mean(without, (r) => r.commitsPerS);
    const tput1 = mean(withA, (r) => r.commitsPerS);
    const p99a = mean(without, (r) => r.p99Us);
    const p99b = mean(withA, (r) => r.p99Us);
    const list = (rs: Run[]): string =>
      rs
        .map((r) => `${r.commitsPerS.toFixed(0)}/s p50 ${r.p50Us.toFixed(0)} µs p99 ${r.p99Us.toFixed(0)} µs, WAL up to ${r.maxWalMB.toFixed(0)} MB${r.agent ? `, ${r.generations} generation(s), ${Number.isNaN(r.backlog) ? 'backlog unknown (generation break)' : `${r.backlog} of ${r.commits} commits not yet in the replica when the writer stopped`}` : ''}`)
        .join('; ');
    const how =
      `app-writer child commits small transactions (update 1 random row of 250,000, insert 1 row; synchronous=NORMAL) as fast as it can for ${RUN_MS / 1000} s on a fresh copy of a 60 MB database, ` +
      `${PAIRS} runs without and ${PAIRS} with the agent (\`pitr replicate DB DIR\`, default settings, writer started once the first snapshot was in the replica; agent SIGKILLed when the writer stops, its catch-up is not timed), alternating; WAL size sampled every 100 ms; ` +
      `without: ${list(without)}; with: ${list(withA)}; ${withA[withA.length - 1]!.problems}`;
    return [
      { name: 'app.commits-per-s.without-agent', value: round(tput0, 0), unit: 'commit/s', how },
      { name: 'app.commits-per-s.with-agent', value: round(tput1, 0), unit: 'commit/s', how: 'same runs' },
      { name: 'app.throughput.with/without', value: round(tput1 / tput0, 3), unit: 'x', how: 'mean commits/s with the agent / mean without, same runs; target >= 0.95' },
      { name: 'app.commit-p99.without-agent', value: round(p99a, 0), unit: 'µs', how: 'p99 of BEGIN..COMMIT time per transaction, mean of the runs' },
      { name: 'app.commit-p99.with-agent', value: round(p99b, 0), unit: 'µs', how: 'same runs' },
      { name: 'app.commit-p99.with/without', value: round(p99b / p99a, 2), unit: 'x', how: 'p99 commit latency with the agent / without, same runs' },
      {
        name: 'app.throughput.sustained.with/without',
        value: round(s1.commitsPerS / s0.commitsPerS, 3),
        unit: 'x',
        how:
          `one more pair of the same runs, ${SUSTAINED_MS / 1000} s each (after the short ones): without ${s0.commitsPerS.toFixed(0)}/s (last quarter ${s0.tailPerS.toFixed(0)}/s, WAL up to ${s0.maxWalMB.toFixed(0)} MB), ` +
          `with ${s1.commitsPerS.toFixed(0)}/s (last quarter ${s1.tailPerS.toFixed(0)}/s, WAL up to ${s1.maxWalMB.toFixed(0)} MB, ${Number.isNaN(s1.backlog) ? 'backlog unknown' : `${s1.backlog} of ${s1.commits} commits not yet in the replica`} when the writer stopped); ` +
          'the WAL grows while a snapshot pins a read transaction or capture is behind, until a reset restarts it; target >= 0.95',
      },
      { name: 'app.throughput.sustained-tail.with/without', value: round(s1.tailPerS / s0.tailPerS, 3), unit: 'x', how: `commits/s over the last quarter (${SUSTAINED_MS / 4000} s) of the sustained runs, with / without: the steady state` },
    ];
  } finally {
    removeDir(dir);
  }
}
