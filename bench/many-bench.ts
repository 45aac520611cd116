/**
 * One agent, many databases: `pitr replicate --config pitr.yml` with one `dir:` entry of N small
 * databases (one replica each) for N = 10, 100, 1,000. Per N, three phases:
 * - start-up: agent start until every replica holds its first snapshot (`pitr agent status --json`
 *   polled once a second);
 * - idle: after start-up settles, a window in which nobody writes;
 * - writing: 5% of the databases each commit one small transaction every 100 ms (one writer
 *   process), with the replica's txid polled on the control socket to measure commit-to-replica lag.
 * Each phase reports the agent's CPU (/proc/PID/stat), RSS (VmRSS), open fds (/proc/PID/fd) and S3
 * requests per minute by method, counted by a proxy between the agent and moto_server on loopback.
 *
 * Settings (environment): PITR_BENCH_MANY_N (default 10,100,1000), PITR_BENCH_MANY_WINDOW_MS
 * (idle and writing windows, default 60000; 15000 with PITR_BENCH_QUICK=1), PITR_BENCH_MANY_IDLE_MS
 * (the idle window alone), PITR_BENCH_MANY_FILE
 * (the Ns that use a file replica instead of S3, e.g. 1000), PITR_BENCH_MANY_CPU_PROF (a
 * directory: the agent runs with --cpu-prof and writes its profile there on exit).
 */
import { execFile } from 'node:child_process';
import { copyFileSync, mkdirSync, readdirSync, writeFileSync } from 'node:fs';
import { loadavg } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import type { BenchRow } from './bench-row.js';
import { nowUs, seedDatabase } from './app-db.js';
import { CountingProxy, MB, benchEnv, logProblems, percentile, procStats, removeDir, round, startAgent, tempDir, type AgentProcess } from './agent-harness.js';
import { METHODS, renderManyTable, type ManyRow } from './many-table.js';
import { startManyWriter } from './many-writer-process.js';
import { request } from '../src/agent/control-client.js';
import type { AgentStatus } from '../src/agent/control-protocol.js';
import { startMotoServer, type MotoServer } from '../test/storage/moto-server.js';

const PITR = fileURLToPath(new URL('../../pitr', import.meta.url));
const QUICK = process.env['PITR_BENCH_QUICK'] === '1';
const NS = (process.env['PITR_BENCH_MANY_N'] ?? '10,100,1000').split(',').map(Number);
const WINDOW_MS = Number(process.env['PITR_BENCH_MANY_WINDOW_MS'] ?? (QUICK ? 15_000 : 60_000));
/**
 * The idle window alone (default WINDOW_MS). With N databases the agent stretches heartbeats and
 * lease renewals to about N * 0.6 s each, so at N=1,000 only a 10 min window shows them.
 */
const IDLE_MS = Number(process.env['PITR_BENCH_MANY_IDLE_MS'] ?? WINDOW_MS);
const FILE_NS = new Set((process.env['PITR_BENCH_MANY_FILE'] ?? '').split(',').filter(Boolean).map(Number));
/** After the last first snapshot: the start-up retention checks (10 s after each start) are done. */
const SETTLE_MS = QUICK ? 12_000 : 20_000;
const STARTUP_TIMEOUT_MS = 15 * 60_000;
const WRITE_EVERY_MS = 100;
const LAG_POLL_MS = 100;
/** Rows per database (~60 KB): small tenants, so start-up measures per-database costs, not copying. */
const SEED_ITEMS = 200;

export async function benchMany(): Promise<BenchRow[]> {
  const table: ManyRow[] = [];
  const rows: BenchRow[] = [];
  for (const n of NS) {
    let kind: 'file' | 's3' = FILE_NS.has(n) ? 'file' : 's3';
    process.stderr.write(`  many: N=${n} databases, ${kind} replica (load average ${loadavg()[0]!.toFixed(2)})...\n`);
    let r;
    try {
      r = await runOne(n, kind);
    } catch (err) {
      if (kind === 'file') throw err;
      // moto_server is one Python process: if it cannot keep up, the agent is measured on files.
      process.stderr.write(`  many: N=${n} on S3 (moto) failed (${(err as Error).message.slice(0, 500)}); measuring N=${n} with a file replica instead\n`);
      kind = 'file';
      r = await runOne(n, kind);
    }
    table.push(...r.table);
    rows.push(...r.rows);
    process.stderr.write(`${renderManyTable(table)}\n`);
  }
  process.stdout.write(`\n${renderManyTable(table)}\n\n`);
  return rows;
}

async function runOne(n: number, kind: 'file' | 's3'): Promise<{ table: ManyRow[]; rows: BenchRow[] }> {
  const dir = tempDir(`many${n}`);
  let moto: MotoServer | undefined;
  let proxy: CountingProxy | undefined;
  let agent: AgentProcess | undefined;
  try {
    const tenants = join(dir, 'tenants');
    const runtime = join(dir, 'run');
    mkdirSync(tenants);
    mkdirSync(runtime, { mode: 0o700 });
    const template = join(dir, 'template.db');
    seedDatabase(template, SEED_ITEMS);
    const names = Array.from({ length: n }, (_, i) => `t${String(i).padStart(4, '0')}`);
    for (const name of names) copyFileSync(template, join(tenants, `${name}.db`));
    let url = `${join(dir, 'replicas')}/{name}`;
    const env: Record<string, string> = { XDG_RUNTIME_DIR: runtime };
    if (kind === 's3') {
      moto = await startMotoServer({ bucket: 'pitr-many' });
      proxy = await CountingProxy.start(moto.endpoint, moto.bucket, `n${n}`);
      url = `s3://${moto.bucket}/n${n}/{name}?endpoint=http://127.0.0.1:${proxy.port}&region=us-east-1`;
      Object.assign(env, moto.env);
    }
    const config = join(dir, 'pitr.yml');
    writeFileSync(config, ['dbs:', `  - dir: ${tenants}`, `    replicas: ["${url}"]`, ''].join('\n'));
    const prof = process.env['PITR_BENCH_MANY_CPU_PROF'];
    const nodeFlags = prof ? ['--cpu-prof', `--cpu-prof-dir=${prof}`, `--cpu-prof-name=agent-n${n}-${Date.now()}.cpuprofile`] : undefined;
    const replica = kind === 's3' ? 'S3 (moto)' : 'file';

    // ---- start-up ----
    const t0 = performance.now();
    agent = startAgent(['--config', config], { env, ...(nodeFlags && { nodeFlags }) });
    const statusCli = async (): Promise<AgentStatus | undefined> => {
      try {
        const { stdout } = await promisify(execFile)(PITR, ['agent', 'status', '--json'], { env: benchEnv(env), maxBuffer: 64 << 20 });
        return JSON.parse(stdout) as AgentStatus;
      } catch {
        return undefined; // the socket is not up yet
      }
    };
    let ready = 0;
    for (;;) {
      if (agent.child.exitCode !== null) throw new Error(`the agent exited during start-up: ${agent.stderr().slice(-3000)}`);
      const s = await statusCli();
      ready = s?.dbs.filter((d) => d.replicas.length > 0 && d.replicas.every((r) => r.txid > 0)).length ?? 0;
      if (ready === n) break;
      if (performance.now() - t0 > STARTUP_TIMEOUT_MS) throw new Error(`only ${ready} of ${n} replicas held a snapshot after ${STARTUP_TIMEOUT_MS / 1000} s`);
      await sleep(1000);
    }
    const startupS = (performance.now() - t0) / 1000;
    const table: ManyRow[] = [{ n, phase: 'start-up', replica, seconds: startupS, ...usage(agent.pid, procStats(agent.pid).cpuSeconds, startupS), ...perMin(proxy, 0, startupS) }];
    process.stderr.write(`  many: N=${n}: every replica held its first snapshot after ${startupS.toFixed(1)} s; settling ${SETTLE_MS / 1000} s\n`);
    await sleep(SETTLE_MS);

    // ---- idle ----
    // Phase bounds in µs on CLOCK_MONOTONIC, the clock of a --cpu-prof profile's timestamps.
    process.stderr.write(`  many: N=${n}: idle window from ${nowUs()} µs\n`);
    let from = window(agent, proxy);
    await sleep(IDLE_MS);
    table.push({ n, phase: 'idle', replica, ...from.end() });
    process.stderr.write(`  many: N=${n}: idle window until ${nowUs()} µs\n`);

    // ---- writing: 5% of the databases ----
    const socket = join(runtime, 'pitr', `${agent.pid}.sock`);
    const status = (): Promise<AgentStatus> => request<AgentStatus>(socket, { op: 'status' }, 30_000);
    const writing = names.filter((_, i) => i % 20 === 0).map((name) => join(tenants, `${name}.db`));
    const before = new Map((await status()).dbs.map((d) => [d.db, d]));
    const base = new Map(writing.map((p) => [p, before.get(p)!.txid]));
    for (const p of writing) {
      const d = before.get(p)!;
      if (d.replicas[0]!.txid !== d.txid) throw new Error(`${p}: replica at txid ${d.replicas[0]!.txid}, captured ${d.txid}: not idle before writing`);
    }
    const writer = startManyWriter(writing, WRITE_EVERY_MS, WINDOW_MS, join(dir, 'commits.json'));
    await writer.ready;
    // Per written database: when each replica txid was first seen (poll answer received, µs).
    const seen = new Map<string, { us: number; txid: number }[]>(writing.map((p) => [p, []]));
    let polls = 0;
    let polling = true;
    const poller = (async () => {
      while (polling) {
        const s = await status();
        const t = nowUs();
        polls++;
        for (const d of s.dbs) {
          const list = seen.get(d.db);
          const txid = d.replicas[0]?.txid ?? 0;
          if (list && (list.length === 0 || list[list.length - 1]!.txid < txid)) list.push({ us: t, txid });
        }
        await sleep(LAG_POLL_MS);
      }
    })();
    from = window(agent, proxy);
    writer.go();
    const log = await writer.done;
    const w = from.end();
    // Then until every replica holds the last commit (bounded), so the last commits' lag counts.
    const deadline = Date.now() + 120_000;
    const last = (p: string): number => base.get(p)! + log[p]!.length;
    while (Date.now() < deadline && !writing.every((p) => (seen.get(p)!.at(-1)?.txid ?? 0) >= last(p))) await sleep(50);
    polling = false;
    await poller;
    const after = new Map((await status()).dbs.map((d) => [d.db, d]));
    const lags: number[] = [];
    const off: string[] = [];
    for (const p of writing) {
      // Commit j (from 0) of a database is txid base + j + 1 while the generation holds: checked.
      if (after.get(p)!.txid !== last(p) || after.get(p)!.generation !== before.get(p)!.generation) {
        off.push(`${p}: ${log[p]!.length} commits from txid ${base.get(p)}, now txid ${after.get(p)!.txid} gen ${after.get(p)!.generation}`);
        continue;
      }
      const list = seen.get(p)!;
      log[p]!.forEach((endUs, j) => {
        const hit = list.find((x) => x.txid >= base.get(p)! + j + 1);
        if (hit) lags.push(Math.max(0, hit.us - endUs) / 1000);
        else off.push(`${p}: commit ${j + 1} never seen in the replica`);
      });
    }
    if (off.length > 0) process.stderr.write(`  many: N=${n}: lag not measured for: ${off.slice(0, 5).join('; ')}${off.length > 5 ? ` (+${off.length - 5})` : ''}\n`);
    table.push({ n, phase: 'writing', replica, ...w, lagP50Ms: percentile(lags, 50), lagP99Ms: percentile(lags, 99), lagSamples: lags.length });

    const problems = logProblems(agent.stderr());
    const code = await agent.stop(180_000);
    agent = undefined;
    const rows = table.map((r): BenchRow => ({
      name: `many.${n}.${r.phase}.cpu`,
      value: round(r.cpuPct, 3),
      unit: '% core',
      how: `one agent, one dir: entry of ${n} ~60 KB databases, one ${r.replica} replica each; ${phaseHow(r, writing.length)}; RSS ${r.rssMB.toFixed(0)} MB, ${r.fds} fds${r.perMin ? `, ${Object.values(r.perMin).reduce((a, b) => a + b, 0).toFixed(1)} req/min (${METHODS.map((m) => `${m} ${r.perMin![m]!.toFixed(1)}`).join(', ')})` : ''}${r.lagP50Ms !== undefined ? `; lag p50 ${r.lagP50Ms.toFixed(0)} ms p99 ${r.lagP99Ms!.toFixed(0)} ms over ${r.lagSamples} commits (status polled every ${LAG_POLL_MS} ms on the control socket, ${polls} polls: an upper bound by up to one poll)` : ''}; ${problems}; agent exit ${code}`,
    }));
    rows.push({ name: `many.${n}.start-up.seconds`, value: round(startupS, 2), unit: 's', how: `agent start until \`pitr agent status --json\` (polled every 1 s) shows every one of ${n} replicas at a txid > 0 (its first snapshot)` });
    return { table, rows };
  } finally {
    await agent?.stop(60_000);
    await proxy?.close();
    await moto?.close();
    removeDir(dir);
  }
}

function phaseHow(r: ManyRow, writers: number): string {
  if (r.phase === 'start-up') return `start-up: ${r.seconds.toFixed(1)} s until every replica held its first snapshot, CPU averaged over it`;
  if (r.phase === 'idle') return `idle: nobody writes, ${SETTLE_MS / 1000} s after start-up, over ${r.seconds.toFixed(0)} s`;
  return `writing: ${writers} databases (5%) each commit one transaction every ${WRITE_EVERY_MS} ms from one writer process, over ${r.seconds.toFixed(0)} s; CPU includes answering the lag poller`;
}

/** CPU (% of one core) over `seconds` given the CPU seconds spent in it, RSS and fds now. */
function usage(pid: number, cpuS: number, seconds: number): { cpuPct: number; rssMB: number; fds: number } {
  return { cpuPct: (cpuS / seconds) * 100, rssMB: procStats(pid).rssBytes / MB, fds: readdirSync(`/proc/${pid}/fd`).length };
}

function perMin(proxy: CountingProxy | undefined, fromIdx: number, seconds: number): { perMin?: Record<string, number> } {
  if (!proxy) return {};
  const counts: Record<string, number> = Object.fromEntries(METHODS.map((m) => [m, 0]));
  for (const r of proxy.requests.slice(fromIdx)) {
    const m = r.method === 'GET' && r.query.includes('list-type') ? 'LIST' : r.method;
    counts[m] = (counts[m] ?? 0) + 1;
  }
  for (const m of Object.keys(counts)) counts[m] = counts[m]! / (seconds / 60);
  return { perMin: counts };
}

/** A measured window: CPU, requests from now until end(). */
function window(agent: AgentProcess, proxy: CountingProxy | undefined): { end(): Omit<ManyRow, 'n' | 'phase' | 'replica'> } {
  const cpu0 = procStats(agent.pid).cpuSeconds;
  const req0 = proxy?.requests.length ?? 0;
  const t0 = performance.now();
  return {
    end() {
      const seconds = (performance.now() - t0) / 1000;
      return { seconds, ...usage(agent.pid, procStats(agent.pid).cpuSeconds - cpu0, seconds), ...perMin(proxy, req0, seconds) };
    },
  };
}
