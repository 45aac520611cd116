/**
 * Issue row 4, idle part: what an agent costs while the database is idle, in CPU and in requests
 * to an S3 replica (counted by a proxy in front of s3rver), with the default heartbeat and with
 * `--heartbeat-interval 0`. Several agents run at once, each on its own database in its own
 * directory; only the agents' own CPU time (/proc/PID/stat) is counted, so this suite can run
 * alongside the others (see run.ts).
 */
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { BenchRow } from './bench-row.js';
import { openStorage } from '../src/storage/open-storage.js';
import { startS3Server, type S3TestServer } from '../test/storage/s3-server.js';
import { nowUs, seedDatabase } from './app-db.js';
import { CountingProxy, MB, logProblems, procStats, removeDir, round, startAgent, tempDir, waitForSnapshot, type AgentProcess } from './agent-harness.js';

const IDLE_MS = Number(process.env['PITR_BENCH_IDLE_MS'] ?? 120_000);
/** From the last agent's start to the start of the measured window. */
const SETTLE_MS = 40_000;

interface Idle {
  label: string;
  heartbeat: string;
  agent: AgentProcess;
  proxy?: CountingProxy;
}

export async function benchIdle(ready: () => void = () => {}): Promise<BenchRow[]> {
  const dir = tempDir('idle');
  let s3: S3TestServer | undefined;
  const agents: Idle[] = [];
  let lastStart = 0;
  try {
    s3 = await startS3Server({ bucket: 'pitr-bench' });
    Object.assign(process.env, s3.env);
    const setups: { label: string; heartbeat: string; kind: 'file' | 's3' }[] = [
      { label: 's3.default', heartbeat: '1m', kind: 's3' },
      { label: 's3.heartbeat-0', heartbeat: '0', kind: 's3' },
      { label: 'file.default', heartbeat: '1m', kind: 'file' },
    ];
    for (const s of setups) {
      const d = join(dir, s.label);
      mkdirSync(d, { recursive: true });
      const db = join(d, 'app.db');
      seedDatabase(db, 20_000);
      let replica = join(d, 'replica');
      let direct = replica;
      let proxy: CountingProxy | undefined;
      if (s.kind === 's3') {
        proxy = await CountingProxy.start(s3.endpoint, s3.bucket, s.label);
        replica = proxy.url();
        direct = s3.url(s.label);
      }
      const args = [db, replica, '--state-dir', join(d, 'state')];
      if (s.heartbeat !== '1m') args.push('--heartbeat-interval', s.heartbeat);
      const agent = startAgent(args);
      lastStart = performance.now();
      agents.push({ label: s.label, heartbeat: s.heartbeat, agent, ...(proxy ? { proxy } : {}) });
      const storage = await openStorage(direct);
      await waitForSnapshot(storage, 120_000, agent);
      await storage.close();
    }
    // Idle means after startup: the first snapshot is shipped, the startup retention check (10 s
    // after start) is done, and V8 has finished the garbage collections that follow loading the
    // modules (measured: ~0.13% of a core for the first ~30 s of any Node process that loads the
    // AWS SDK, then ~0.06%). Then every agent is measured over the same window.
    ready();
    await sleep(Math.max(1000, lastStart + SETTLE_MS - performance.now()));
    const start = agents.map((a) => ({ cpu: procStats(a.agent.pid).cpuSeconds, requests: a.proxy?.requests.length ?? 0 }));
    const t0 = performance.now();
    const t0Us = nowUs();
    process.stderr.write(`  idle: ${agents.length} idle agents measured for ${IDLE_MS / 1000} s (in the background)...\n`);
    await sleep(IDLE_MS);
    const windowS = (performance.now() - t0) / 1000;
    const rows: BenchRow[] = [];
    agents.forEach((a, i) => {
      const st = procStats(a.agent.pid);
      const cpuS = st.cpuSeconds - start[i]!.cpu;
      const what = `an idle agent (\`pitr replicate DB ${a.label.startsWith('s3') ? 'S3' : 'DIR'}${a.heartbeat === '1m' ? '' : ` --heartbeat-interval ${a.heartbeat}`}\`, otherwise default settings) on a 5 MB database nobody writes, from 40 s after its start (first snapshot shipped, startup retention check done, post-startup GC settled), over ${windowS.toFixed(0)} s (in a full run this suite runs alongside the others; only the agents' own CPU time is counted)`;
      rows.push({
        name: `idle.${a.label}.cpu`,
        value: round((cpuS / windowS) * 100, 3),
        unit: '% core',
        how: `utime+stime (/proc/PID/stat, ${cpuS.toFixed(2)} s) of ${what}; RSS at the end ${(st.rssBytes / MB).toFixed(0)} MB (peak ${(st.peakRssBytes / MB).toFixed(0)} MB); target < 0.1%`,
      });
      if (a.proxy) {
        const reqs = a.proxy.requests.slice(start[i]!.requests);
        const list = reqs
          .map((r) => {
            const what = r.query.includes('list-type') ? `LIST ${decodeURIComponent(/prefix=([^&]*)/.exec(r.query)?.[1] ?? '')}` : `${r.method} ${r.path.split('/').slice(3).join('/')}`;
            return `${what} at +${((r.endUs - t0Us) / 1e6).toFixed(0)} s`;
          })
          .join(', ');
        rows.push({
          name: `idle.${a.label}.requests-per-min`,
          value: round(reqs.length / (windowS / 60), 2),
          unit: 'req/min',
          how: `requests the agent sent to s3rver through a counting proxy, during the same window as the CPU row: ${reqs.length === 0 ? 'none' : list}. The first retention check runs 10 s after start (1 LIST per replica); later hourly checks LIST only when something was shipped since the last one or an object in that listing has since aged past --retention; heartbeats are 1 PUT per --heartbeat-interval once the replica has been idle that long (checked every 15 s); target: no requests`,
        });
      }
      const problems = logProblems(a.agent.stderr());
      if (!problems.endsWith('no warnings or errors')) rows[rows.length - 1]!.how += `; ${problems}`;
    });
    return rows;
  } finally {
    for (const a of agents) {
      await a.agent.stop();
      await a.proxy?.close();
    }
    await s3?.close();
    removeDir(dir);
  }
}
