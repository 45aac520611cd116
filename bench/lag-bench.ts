/**
 * Issue rows 2 and 6: replication lag (COMMIT returned -> object durable in the replica) of the
 * real agent, and the cron `.backup + gzip` baseline for the same workload.
 */
import { spawnSync } from 'node:child_process';
import { copyFileSync, mkdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import type { BenchRow } from './bench-row.js';
import { openStorage } from '../src/storage/open-storage.js';
import { segmentsPrefix } from '../src/segment/object-names.js';
import type { StorageClient } from '../src/storage/storage-client.js';
import { startS3Server, type S3TestServer } from '../test/storage/s3-server.js';
import { readK, seedDatabase } from './app-db.js';
import {
  CountingProxy,
  FileSegmentWatcher,
  MB,
  ProxySegmentWatcher,
  S3ListWatcher,
  lagsMs,
  percentile,
  procStats,
  removeDir,
  round,
  runCli,
  startAgent,
  startWriter,
  tempDir,
  waitForSnapshot,
  type CommitLog,
  type SegmentWatcher,
} from './agent-harness.js';

const SEED_ITEMS = 250_000;
const SPARSE_COMMITS = Number(process.env['PITR_BENCH_SPARSE_COMMITS'] ?? 40);
const STEADY_RATE = 1000;
const STEADY_MS = 10_000;
const POLL_MS = 10;

export interface LagRun {
  label: string;
  lags: number[];
  log: CommitLog;
  snapshotTxid: number;
  /** Bytes of the segment objects holding the workload's commits. */
  segmentBytes: number;
  segments: number;
  snapshotBytes: number;
  agentCpuSeconds: number;
  agentPeakRss: number;
  note: string;
}

/** The shared app database seed for the lag, overhead and cron rows. */
export function makeSeed(dir: string): { path: string; bytes: number } {
  const path = join(dir, 'seed.db');
  const bytes = seedDatabase(path, SEED_ITEMS);
  return { path, bytes };
}

export function copyDb(seed: string, dir: string): string {
  mkdirSync(dir, { recursive: true });
  const db = join(dir, 'app.db');
  copyFileSync(seed, db);
  return db;
}

async function segmentBytes(storage: StorageClient, generation: string): Promise<{ bytes: number; count: number }> {
  const objs = await storage.list(segmentsPrefix(generation));
  return { bytes: objs.reduce((n, o) => n + o.size, 0), count: objs.length };
}

function summary(lags: number[]): string {
  return `p50 ${round(percentile(lags, 50))} / p99 ${round(percentile(lags, 99))} / max ${round(Math.max(...lags))} ms`;
}

export async function benchLag(): Promise<BenchRow[]> {
  const dir = tempDir('lag');
  let s3: S3TestServer | undefined;
  const rows: BenchRow[] = [];
  try {
    const seed = makeSeed(dir);
    s3 = await startS3Server({ bucket: 'pitr-bench' });
    Object.assign(process.env, s3.env);
    const seedNote = `app database seeded with ${SEED_ITEMS} rows (${(seed.bytes / MB).toFixed(0)} MB, indexed), WAL mode, synchronous=NORMAL`;

    // ---- 2a: sparse commits, default settings, one agent shipping to a file and an S3 replica ----
    process.stderr.write(`  lag: ${SPARSE_COMMITS} sparse commits (one every 1-2 s)...\n`);
    const a = join(dir, 'sparse');
    const dbA = copyDb(seed.path, a);
    const fileA = join(a, 'replica');
    const s3UrlA = s3.url('sparse');
    const agentA = startAgent([dbA, fileA, s3UrlA, '--state-dir', join(a, 'state')]);
    const fsA = await openStorage(fileA);
    const s3A = await openStorage(s3UrlA);
    const [snapF, snapS] = await Promise.all([waitForSnapshot(fsA), waitForSnapshot(s3A)]);
    if (snapF.key !== snapS.key) throw new Error('file and S3 replicas started from different snapshots');
    const wf = new FileSegmentWatcher(fileA, snapF.generation);
    const ws = new S3ListWatcher(s3A, snapF.generation, POLL_MS);
    const writerA = startWriter(['--db', dbA, '--mode', 'sparse', '--count', String(SPARSE_COMMITS)], join(a, 'commits.json'));
    await writerA.ready;
    const cpuA0 = procStats(agentA.pid).cpuSeconds;
    writerA.go();
    const logA = await writerA.done;
    const lastA = snapF.txid + SPARSE_COMMITS;
    await Promise.all([wf.waitFor(lastA, 30_000), ws.waitFor(lastA, 30_000)]);
    const statsA = procStats(agentA.pid);
    await ws.close();
    wf.close();
    checkNoExtra(wf, lastA);
    checkNoExtra(ws, lastA);
    // The txid <-> commit mapping, checked end to end: the state at txid S+N holds meta.k = N.
    const restoredA = join(a, 'check.db');
    runCli(['restore', fileA, '-o', restoredA, '--txid', String(lastA)]);
    const kA = readK(restoredA);
    if (kA !== SPARSE_COMMITS) throw new Error(`restore at txid ${lastA} holds commit ${kA}, expected ${SPARSE_COMMITS}: txid mapping is off`);
    const segA = await segmentBytes(fsA, snapF.generation);
    const meanGapS = (logA.endUs[logA.endUs.length - 1]! - logA.endUs[0]!) / 1e6 / (SPARSE_COMMITS - 1);
    const sparseFile: LagRun = {
      label: 'sparse/file',
      lags: lagsMs(logA, snapF.txid, wf),
      log: logA,
      snapshotTxid: snapF.txid,
      segmentBytes: segA.bytes,
      segments: segA.count,
      snapshotBytes: snapF.size,
      agentCpuSeconds: statsA.cpuSeconds - cpuA0,
      agentPeakRss: statsA.peakRssBytes,
      note: `${wf.missedEvents} objects found by the 200 ms readdir fallback instead of inotify`,
    };
    const sparseS3Lags = lagsMs(logA, snapF.txid, ws);
    await agentA.stop();
    await fsA.close();
    await s3A.close();

    const howA = (replica: string, detect: string): string =>
      `real agent (\`pitr replicate DB FILE S3\`, default settings: --sync-interval 1s) shipping to a directory and a loopback s3rver replica at once; ` +
      `app-writer child process commits ${SPARSE_COMMITS} small transactions (update 1 row, insert 1 row) one every 1-2 s (uniform; mean ${meanGapS.toFixed(2)} s) into an ${seedNote}; ` +
      `lag = ${replica} object holding the commit's txid first seen by the bench (${detect}) minus COMMIT returned (both CLOCK_MONOTONIC); txid = snapshot txid + commit number, checked by restoring the last txid; n = ${SPARSE_COMMITS}, so p99 is the 2nd largest`;
    const fileDetect = 'inotify on the segments directory: the final name appears by rename after the temp file is fsync\'d; the directory fsync follows';
    const s3Detect = `ListObjectsV2 through pitr's S3Storage every ${POLL_MS} ms after the previous LIST returned (mean LIST ${(ws.pollUs / ws.polls / 1000).toFixed(1)} ms, so resolution ~${(POLL_MS + ws.pollUs / ws.polls / 1000).toFixed(0)} ms; counted when the LIST returned)`;
    for (const [replica, lags, detect] of [
      ['file', sparseFile.lags, fileDetect],
      ['S3', sparseS3Lags, s3Detect],
    ] as const) {
      for (const p of [50, 99] as const) {
        rows.push({ name: `lag.sparse.${replica === 'file' ? 'file' : 's3'}.p${p}`, value: round(percentile(lags, p)), unit: 'ms', how: `${howA(replica, detect)}; target p99 < 100 ms` });
      }
      rows.push({ name: `lag.sparse.${replica === 'file' ? 'file' : 's3'}.max`, value: round(Math.max(...lags)), unit: 'ms', how: `same run; ${summary(lags)}` });
    }

    // ---- 2b: a steady 1,000 commits/s with --sync-interval 0, one agent per replica kind ----
    const steady = async (kind: 'file' | 's3'): Promise<LagRun & { rate: number; proxyNote: string }> => {
      process.stderr.write(`  lag: ${STEADY_RATE} commits/s for ${STEADY_MS / 1000} s, --sync-interval 0, ${kind} replica...\n`);
      const d = join(dir, `steady-${kind}`);
      const db = copyDb(seed.path, d);
      let proxy: CountingProxy | undefined;
      let replicaArg: string;
      let storage: StorageClient;
      if (kind === 'file') {
        replicaArg = join(d, 'replica');
        storage = await openStorage(replicaArg);
      } else {
        proxy = await CountingProxy.start(s3!.endpoint, s3!.bucket, `steady`);
        replicaArg = proxy.url();
        storage = await openStorage(s3!.url('steady'));
      }
      const agent = startAgent([db, replicaArg, '--state-dir', join(d, 'state'), '--sync-interval', '0']);
      process.on('exit', () => { if (process.env['PITR_BENCH_DEBUG']) process.stderr.write(agent.stderr().slice(-20000)); });
      const snap = await waitForSnapshot(storage);
      const watcher: SegmentWatcher = kind === 'file' ? new FileSegmentWatcher(replicaArg, snap.generation) : new ProxySegmentWatcher(proxy!, snap.generation);
      const writer = startWriter(['--db', db, '--mode', 'rate', '--rate', String(STEADY_RATE), '--duration-ms', String(STEADY_MS)], join(d, 'commits.json'));
      await writer.ready;
      const cpu0 = procStats(agent.pid).cpuSeconds;
      writer.go();
      const log = await writer.done;
      const last = snap.txid + log.k.length;
      await watcher.waitFor(last, 60_000);
      const st = procStats(agent.pid);
      await watcher.close();
      checkNoExtra(watcher, last);
      const seg = await segmentBytes(storage, snap.generation);
      const spanS = (log.endUs[log.endUs.length - 1]! - log.endUs[0]!) / 1e6;
      const lags = lagsMs(log, snap.txid, watcher);
      await agent.stop();
      await storage.close();
      const proxyNote = proxy ? `${proxy.requests.length} requests through the proxy` : '';
      await proxy?.close();
      return {
        label: `steady/${kind}`,
        lags,
        log,
        snapshotTxid: snap.txid,
        segmentBytes: seg.bytes,
        segments: seg.count,
        snapshotBytes: snap.size,
        agentCpuSeconds: st.cpuSeconds - cpu0,
        agentPeakRss: st.peakRssBytes,
        rate: log.k.length / spanS,
        note: watcher instanceof FileSegmentWatcher ? `${watcher.missedEvents} objects found by the readdir fallback` : '',
        proxyNote,
      };
    };
    const steadyFile = await steady('file');
    const steadyS3 = await steady('s3');
    for (const r of [steadyFile, steadyS3]) {
      const kind = r === steadyFile ? 'file' : 's3';
      const detect =
        kind === 'file'
          ? fileDetect
          : 'the agent talks to s3rver through a counting loopback proxy in the bench process; an object counts from the moment s3rver\'s 2xx answer to its PUT reached the proxy (LIST polling every 10 ms would itself load the single s3rver process with thousands of objects; the proxy adds one loopback hop to every request, so this is pessimistic)';
      const how =
        `real agent (\`pitr replicate DB ${kind === 'file' ? 'DIR' : 'S3'} --sync-interval 0\`), app-writer child paced at ${STEADY_RATE} commits/s against absolute deadlines for ${STEADY_MS / 1000} s ` +
        `(achieved ${r.rate.toFixed(0)}/s, ${r.log.k.length} commits; each updates 1 row and inserts 1 row) into an ${seedNote}; ` +
        `lag = object holding the txid first seen (${detect}) minus COMMIT returned; ${r.segments} objects shipped; ${r.note}${r.proxyNote}`;
      rows.push({ name: `lag.1000cps.${kind}.p50`, value: round(percentile(r.lags, 50)), unit: 'ms', how: `${how}${kind === 'file' ? '; target p99 < 100 ms' : ''}` });
      rows.push({ name: `lag.1000cps.${kind}.p99`, value: round(percentile(r.lags, 99)), unit: 'ms', how: 'same run' });
      rows.push({ name: `lag.1000cps.${kind}.max`, value: round(Math.max(...r.lags)), unit: 'ms', how: `same run; ${summary(r.lags)}` });
      rows.push({
        name: `agent.cpu.1000cps.${kind}`,
        value: round((r.agentCpuSeconds / (r.log.k.length / r.rate)) * 100, 1),
        unit: '% core',
        how: `agent utime+stime (/proc/PID/stat) from the writer's start until the last commit was in the replica, over the writing time; peak RSS (VmHWM) ${(r.agentPeakRss / MB).toFixed(0)} MB`,
      });
    }

    // ---- 6: the cron baseline, for the same database and workloads ----
    process.stderr.write('  lag: cron baseline (.backup + gzip)...\n');
    const cron = backupAndGzip(join(dir, 'steady-file', 'app.db'), join(dir, 'cron'));
    const gz = cron.gzBytes;
    const dayS = 86_400;
    const sparsePerDay = (sparseFile.segmentBytes / SPARSE_COMMITS) * (dayS / meanGapS) + sparseFile.snapshotBytes;
    const steadyPerDay = (steadyFile.segmentBytes / steadyFile.log.k.length) * STEADY_RATE * dayS + steadyFile.snapshotBytes;
    const cronHow = `\`sqlite3 DB ".backup F"\` then \`gzip -c F\` (default level) of the ${(cron.dbBytes / MB).toFixed(0)} MB app database after the 1,000 commits/s run: ${(gz / MB).toFixed(2)} MB per dump, taking ${cron.seconds.toFixed(2)} s`;
    for (const hours of [1, 6, 24]) {
      rows.push({ name: `cron.every-${hours}h.bytes-per-day`, value: round(((24 / hours) * gz) / MB, 1), unit: 'MB/day', how: `${24 / hours} dumps a day; ${cronHow}` });
    }
    rows.push({
      name: 'pitr.sparse.bytes-per-day',
      value: round(sparsePerDay / MB, 1),
      unit: 'MB/day',
      how: `the sparse workload (one commit per ${meanGapS.toFixed(2)} s) extrapolated to a day: measured segment bytes per commit in the file replica (${(sparseFile.segmentBytes / SPARSE_COMMITS / 1000).toFixed(2)} kB, one object per commit) x ${(dayS / meanGapS).toFixed(0)} commits, plus one ${(sparseFile.snapshotBytes / MB).toFixed(1)} MB snapshot a day (default --snapshot-interval 24h); heartbeats not counted (none while commits flow)`,
    });
    rows.push({
      name: 'pitr.1000cps.bytes-per-day',
      value: round(steadyPerDay / MB, 0),
      unit: 'MB/day',
      how: `the 1,000 commits/s workload extrapolated to a day: ${(steadyFile.segmentBytes / steadyFile.log.k.length).toFixed(0)} B of segment per commit in the file replica (${steadyFile.segments} objects for ${steadyFile.log.k.length} commits, --sync-interval 0) x 86.4 M commits, plus one snapshot a day. pitr stores every transaction's pages, so its bytes grow with the write volume; a dump's with the database size`,
    });
    rows.push({ name: 'pitr.sparse.bytes-per-day.vs-cron-1h', value: round(sparsePerDay / (24 * gz), 2), unit: 'x', how: 'pitr bytes/day for the sparse workload / cron every 1 h bytes/day, same database, same run' });
    rows.push({ name: 'pitr.1000cps.bytes-per-day.vs-cron-1h', value: round(steadyPerDay / (24 * gz), 2), unit: 'x', how: 'pitr bytes/day at 1,000 commits/s / cron every 1 h bytes/day, same database, same run' });
    for (const hours of [1, 6, 24]) {
      rows.push({ name: `cron.every-${hours}h.worst-loss`, value: hours * 3600 + round(cron.seconds, 1), unit: 's', how: 'a crash just before a dump completes loses everything since the previous dump started: the interval plus the dump time' });
    }
    const worst = [
      ['sparse.file', sparseFile.lags],
      ['sparse.s3', sparseS3Lags],
      ['1000cps.file', steadyFile.lags],
      ['1000cps.s3', steadyS3.lags],
    ] as const;
    for (const [label, lags] of worst) {
      rows.push({
        name: `pitr.${label}.worst-loss`,
        value: round(Math.max(...lags) / 1000, 3),
        unit: 's',
        how: `largest lag observed in the ${label.replace('.', ' / ')} run above (p99 ${round(percentile(lags, 99))} ms): what a crash of the machine at the worst moment would lose; ${round((3600 * 1000) / Math.max(...lags), 0)}x less than cron every 1 h`,
      });
    }
    return rows;
  } finally {
    await s3?.close();
    removeDir(dir);
  }
}

function checkNoExtra(w: SegmentWatcher, last: number): void {
  if (w.maxTxid !== last) throw new Error(`replica reached txid ${w.maxTxid}, expected exactly ${last}: another writer, or the txid mapping is off`);
}

/** One cron-style dump: `sqlite3 DB ".backup F"` and `gzip -c F` (falls back to better-sqlite3 / zlib when missing). */
export function backupAndGzip(db: string, dir: string): { dbBytes: number; gzBytes: number; seconds: number } {
  mkdirSync(dir, { recursive: true });
  const out = join(dir, 'dump.db');
  const t0 = performance.now();
  const b = spawnSync('sqlite3', [db, `.backup '${out}'`], { encoding: 'utf8' });
  if (b.status !== 0) throw new Error(`sqlite3 .backup failed: ${b.stderr || b.error?.message}`);
  const g = spawnSync('gzip', ['-c', out], { maxBuffer: 2 << 30 });
  const gzBytes = g.status === 0 ? (g.stdout as Buffer).length : gzipSync(readFileSync(out)).length;
  const seconds = (performance.now() - t0) / 1000;
  return { dbBytes: statSync(out).size, gzBytes, seconds };
}
