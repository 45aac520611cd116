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
import { parseObjectKey, segmentsPrefix } from '../src/segment/object-names.js';
import { readSegmentHeader } from '../src/segment/index.js';
import { formatBytes } from '../src/util/duration.js';
import { DEFAULT_SNAPSHOT_WAL_MIN_BYTES, DEFAULT_SNAPSHOT_WAL_RATIO } from '../src/config/defaults.js';
import { snapshotWalLimit } from '../src/replicate/snapshot-wal-limit.js';
import type { StorageClient } from '../src/storage/storage-client.js';
import { startS3Server, type S3TestServer } from '../test/storage/s3-server.js';
import { nowUs, readK, seedDatabase } from './app-db.js';
import {
  CountingProxy,
  FileReplicaWatcher,
  MB,
  ProxyReplicaWatcher,
  S3ListWatcher,
  commitLagsMs,
  logProblems,
  percentile,
  procStats,
  removeDir,
  round,
  runCli,
  startAgent,
  startWriter,
  tempDir,
  waitForSnapshot,
  type ObjectSeen,
  type ReplicaWatcher,
} from './agent-harness.js';

const SEED_ITEMS = 250_000;
const SPARSE_COMMITS = Number(process.env['PITR_BENCH_SPARSE_COMMITS'] ?? 40);
const STEADY_RATE = 1000;
const STEADY_MS = 10_000;
const POLL_MS = 10;

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

/** Stored bytes of a generation's segments, and their uncompressed body bytes (the WAL they hold). */
async function segmentBytes(storage: StorageClient, generation: string): Promise<{ bytes: number; bodyBytes: number; count: number; lastTxid: number }> {
  const objs = await storage.list(segmentsPrefix(generation));
  let lastTxid = 0;
  let bodyBytes = 0;
  for (const o of objs) {
    const n = parseObjectKey(o.key);
    if (n?.kind !== 'segment') continue;
    lastTxid = Math.max(lastTxid, n.lastTxid);
    // The header always lies within the first 4096 bytes.
    bodyBytes += readSegmentHeader(await storage.get(o.key, { range: { start: 0, end: 4095 } }), o.key).bodyLength;
  }
  return { bytes: objs.reduce((n, o) => n + o.size, 0), bodyBytes, count: objs.length, lastTxid };
}


function summary(lags: number[]): string {
  return `p50 ${round(percentile(lags, 50))} / p99 ${round(percentile(lags, 99))} / max ${round(Math.max(...lags))} ms`;
}

/** meta.k of the state right after `snapshot` (its app commit count), by a real restore from `replica`. */
function commitsInSnapshot(replica: string, dir: string): (snapshot: ObjectSeen) => Promise<number> {
  return async (snapshot) => {
    const out = join(dir, `k-${snapshot.firstTxid}.db`);
    runCli(['restore', replica, '-o', out, '--txid', String(snapshot.firstTxid), '--force']);
    return readK(out);
  };
}

interface Measured {
  lags: number[];
  generations: number;
  viaSnapshot: number;
}

function lagNote(m: Measured): string {
  if (m.generations === 1) return 'one generation throughout';
  return (
    `THE AGENT STARTED ${m.generations - 1} NEW GENERATION(S) DURING THE RUN (full snapshot each); ${m.viaSnapshot} commits became durable only with a new generation's snapshot ` +
    '(counted from when that snapshot was seen)'
  );
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
    process.stderr.write(`  lag: ${SPARSE_COMMITS} sparse commits (one every 1-2 s), file + S3 replica...\n`);
    const a = join(dir, 'sparse');
    const dbA = copyDb(seed.path, a);
    const fileA = join(a, 'replica');
    const proxyA = await CountingProxy.start(s3.endpoint, s3.bucket, 'sparse');
    const agentA = startAgent([dbA, fileA, proxyA.url(), '--state-dir', join(a, 'state')]);
    const fsA = await openStorage(fileA);
    const s3A = await openStorage(s3.url('sparse'));
    const [snapF, snapS] = await Promise.all([waitForSnapshot(fsA, 120_000, agentA), waitForSnapshot(s3A, 120_000, agentA)]);
    if (snapF.key !== snapS.key) throw new Error('file and S3 replicas started from different snapshots');
    const wf = new FileReplicaWatcher(fileA);
    const wp = new ProxyReplicaWatcher(proxyA);
    wp.known(snapS.key, nowUs());
    // Also LIST-poll the S3 replica, as an independent check of the proxy's acknowledgements.
    const ws = new S3ListWatcher(s3A, POLL_MS);
    const writerA = startWriter(['--db', dbA, '--mode', 'sparse', '--count', String(SPARSE_COMMITS)], join(a, 'commits.json'));
    await writerA.ready;
    writerA.go();
    const logA = await writerA.done;
    await Promise.all([wf.settle(1500), ws.settle(1500)]);
    await ws.close();
    wf.close();
    wp.close();
    await proxyA.close();
    const problemsA = logProblems(agentA.stderr());
    await agentA.stop();
    const sparseFile = await commitLagsMs(logA, wf, commitsInSnapshot(fileA, a));
    const sparseS3 = await commitLagsMs(logA, wp, commitsInSnapshot(fileA, a));
    const sparseS3List = await commitLagsMs(logA, ws, commitsInSnapshot(fileA, a));
    // The txid <-> commit mapping, checked end to end: the newest state holds meta.k = N.
    const restoredA = join(a, 'check.db');
    runCli(['restore', fileA, '-o', restoredA]);
    if (readK(restoredA) !== SPARSE_COMMITS) throw new Error(`latest restore holds commit ${readK(restoredA)}, expected ${SPARSE_COMMITS}`);
    const segA = await segmentBytes(fsA, snapF.generation);
    await fsA.close();
    await s3A.close();
    const meanGapS = (logA.endUs[logA.endUs.length - 1]! - logA.endUs[0]!) / 1e6 / (SPARSE_COMMITS - 1);

    const howA = (replica: string, detect: string, m: Measured): string =>
      `real agent (\`pitr replicate DB DIR S3\`, default settings: --sync-interval 1s) shipping to a directory and a loopback s3rver replica at once; ` +
      `app-writer child process commits ${SPARSE_COMMITS} small transactions (update 1 row, insert 1 row) one every 1-2 s (uniform; mean ${meanGapS.toFixed(2)} s) into an ${seedNote}; ` +
      `lag = ${replica} object holding the commit's txid first seen by the bench (${detect}) minus COMMIT returned (both CLOCK_MONOTONIC); txid = snapshot txid + commit number, checked by restoring; n = ${SPARSE_COMMITS}, so p99 is the largest or 2nd largest; ${lagNote(m)}; ${problemsA}`;
    const fileDetect = "inotify on the replica's directories: the final name appears by rename after the temp file is fsync'd; the directory fsync follows";
    const listRes = POLL_MS + ws.pollUs / ws.polls / 1000;
    const s3Detect =
      `s3rver's 2xx answer to the PutObject reaching a counting loopback proxy the agent talks to (one extra loopback hop per request, so pessimistic). ` +
      `Cross-check: ListObjectsV2 through pitr's S3Storage every ${POLL_MS} ms after the previous LIST returned (mean LIST ${(ws.pollUs / ws.polls / 1000).toFixed(1)} ms, so resolution ~${listRes.toFixed(0)} ms, counted when the LIST returned) ` +
      `saw the same commits at p50 ${round(percentile(sparseS3List.lags, 50))} / p99 ${round(percentile(sparseS3List.lags, 99))} / max ${round(Math.max(...sparseS3List.lags))} ms`;
    for (const [replica, m, detect] of [
      ['file', sparseFile, fileDetect],
      ['s3', sparseS3, s3Detect],
    ] as const) {
      rows.push({ name: `lag.sparse.${replica}.p50`, value: round(percentile(m.lags, 50)), unit: 'ms', how: `${howA(replica === 'file' ? 'file' : 'S3', detect, m)}; target p99 < 100 ms` });
      rows.push({ name: `lag.sparse.${replica}.p99`, value: round(percentile(m.lags, 99)), unit: 'ms', how: 'same run' });
      rows.push({ name: `lag.sparse.${replica}.max`, value: round(Math.max(...m.lags)), unit: 'ms', how: `same run; ${summary(m.lags)}` });
    }

    // ---- 2b: a steady 1,000 commits/s with --sync-interval 0, one agent per replica kind ----
    const steady = async (kind: 'file' | 's3') => {
      process.stderr.write(`  lag: ${STEADY_RATE} commits/s for ${STEADY_MS / 1000} s, --sync-interval 0, ${kind} replica...\n`);
      const d = join(dir, `steady-${kind}`);
      const db = copyDb(seed.path, d);
      let proxy: CountingProxy | undefined;
      let replicaArg: string;
      let direct: string;
      if (kind === 'file') {
        replicaArg = direct = join(d, 'replica');
      } else {
        proxy = await CountingProxy.start(s3!.endpoint, s3!.bucket, 'steady');
        replicaArg = proxy.url();
        direct = s3!.url('steady');
      }
      const storage = await openStorage(direct);
      const agent = startAgent([db, replicaArg, '--state-dir', join(d, 'state'), '--sync-interval', '0']);
      const snap = await waitForSnapshot(storage, 120_000, agent);
      const watcher: ReplicaWatcher = kind === 'file' ? new FileReplicaWatcher(replicaArg) : new ProxyReplicaWatcher(proxy!);
      watcher.known(snap.key, nowUs());
      const writer = startWriter(['--db', db, '--mode', 'rate', '--rate', String(STEADY_RATE), '--duration-ms', String(STEADY_MS)], join(d, 'commits.json'));
      await writer.ready;
      const cpu0 = procStats(agent.pid).cpuSeconds;
      writer.go();
      const log = await writer.done;
      const tWrote = performance.now();
      await watcher.settle(1500);
      const st = procStats(agent.pid);
      const drainS = (performance.now() - tWrote - 1500) / 1000;
      await watcher.close();
      const problems = logProblems(agent.stderr());
      await agent.stop();
      const m = await commitLagsMs(log, watcher, commitsInSnapshot(direct, d));
      const seg = await segmentBytes(storage, snap.generation);
      await storage.close();
      const spanS = (log.endUs[log.endUs.length - 1]! - log.endUs[0]!) / 1e6;
      const requests = proxy ? proxy.requests.length : 0;
      await proxy?.close();
      return { kind, m, log, snap, seg, cpu: st.cpuSeconds - cpu0, peakRss: st.peakRssBytes, rate: log.k.length / spanS, spanS, drainS, problems, requests, missed: watcher instanceof FileReplicaWatcher ? watcher.missedEvents : 0 };
    };
    const steadyFile = await steady('file');
    const steadyS3 = await steady('s3');
    for (const r of [steadyFile, steadyS3]) {
      const detect =
        r.kind === 'file'
          ? `${fileDetect}; ${r.missed} objects found by the 200 ms readdir fallback`
          : `the agent talks to s3rver through a counting loopback proxy in the bench process (${r.requests} requests); an object counts from the moment s3rver's 2xx answer to its PutObject / CompleteMultipartUpload reached the proxy (LIST polling every 10 ms would itself load the single s3rver process once thousands of objects exist; the proxy adds one loopback hop to every request, so this is pessimistic)`;
      const how =
        `real agent (\`pitr replicate DB ${r.kind === 'file' ? 'DIR' : 'S3'} --sync-interval 0\`), app-writer child paced at ${STEADY_RATE} commits/s against absolute deadlines for ${STEADY_MS / 1000} s ` +
        `(achieved ${r.rate.toFixed(0)}/s, ${r.log.k.length} commits; each updates 1 row and inserts 1 row) into an ${seedNote}; ` +
        `lag = object holding the txid first seen (${detect}) minus COMMIT returned; ${r.seg.count} segment objects in the first generation; ${lagNote(r.m)}; ${r.problems}`;
      rows.push({ name: `lag.1000cps.${r.kind}.p50`, value: round(percentile(r.m.lags, 50)), unit: 'ms', how: `${how}${r.kind === 'file' ? '; target p99 < 100 ms' : ''}` });
      rows.push({ name: `lag.1000cps.${r.kind}.p99`, value: round(percentile(r.m.lags, 99)), unit: 'ms', how: 'same run' });
      rows.push({ name: `lag.1000cps.${r.kind}.max`, value: round(Math.max(...r.m.lags)), unit: 'ms', how: `same run; ${summary(r.m.lags)}` });
      rows.push({
        name: `lag.1000cps.${r.kind}.generations`,
        value: r.m.generations,
        unit: 'count',
        how: 'generations in the replica at the end of the run (1 = continuity kept throughout; each extra one is a continuity break with a full snapshot, and restore cannot target the commits in between)',
      });
      rows.push({
        name: `agent.cpu.1000cps.${r.kind}`,
        value: round((r.cpu / (r.spanS + r.drainS)) * 100, 1),
        unit: '% core',
        how: `agent utime+stime (/proc/PID/stat) from the writer's start until the replica was caught up (${(r.spanS + r.drainS).toFixed(1)} s), per second of that time; peak RSS (VmHWM) ${(r.peakRss / MB).toFixed(0)} MB`,
      });
    }

    // ---- 6: the cron baseline, for the same database and workloads ----
    process.stderr.write('  lag: cron baseline (.backup + gzip)...\n');
    const cron = backupAndGzip(join(dir, 'steady-file', 'app.db'), join(dir, 'cron'));
    const gz = cron.gzBytes;
    const dayS = 86_400;
    // Plus the snapshots --snapshot-wal-ratio takes (none within these short runs; counted from
    // the WAL a day would bring), each the size of the run's first snapshot of the same database.
    const walSnapLimit = snapshotWalLimit(DEFAULT_SNAPSHOT_WAL_RATIO, DEFAULT_SNAPSHOT_WAL_MIN_BYTES, seed.bytes);
    const sparseWalSnaps = ((segA.bodyBytes / SPARSE_COMMITS) * (dayS / meanGapS)) / walSnapLimit;
    const sparsePerDay = (segA.bytes / SPARSE_COMMITS) * (dayS / meanGapS) + (1 + sparseWalSnaps) * snapF.size;
    const steadyCommits = steadyFile.m.generations === 1 ? steadyFile.log.k.length : steadyFile.seg.lastTxid - steadyFile.snap.txid;
    const steadyPerCommit = steadyFile.seg.bytes / steadyCommits;
    const steadyWalSnaps = ((steadyFile.seg.bodyBytes / steadyCommits) * STEADY_RATE * dayS) / walSnapLimit;
    const steadyPerDay = steadyPerCommit * STEADY_RATE * dayS + (1 + steadyWalSnaps) * steadyFile.snap.size;
    const cronHow = `\`sqlite3 DB ".backup F"\` then \`gzip -c F\` (default level) of the ${(cron.dbBytes / MB).toFixed(0)} MB app database after the 1,000 commits/s run: ${(gz / MB).toFixed(2)} MB per dump, taking ${cron.seconds.toFixed(2)} s`;
    for (const hours of [1, 6, 24]) {
      rows.push({ name: `cron.every-${hours}h.bytes-per-day`, value: round(((24 / hours) * gz) / MB, 1), unit: 'MB/day', how: `${24 / hours} dumps a day; ${cronHow}` });
    }
    rows.push({
      name: 'pitr.sparse.bytes-per-day',
      value: round(sparsePerDay / MB, 1),
      unit: 'MB/day',
      how: `the sparse workload (one commit per ${meanGapS.toFixed(2)} s) extrapolated to a day: measured segment bytes per commit in the file replica (${(segA.bytes / SPARSE_COMMITS / 1000).toFixed(2)} kB; ${segA.count} objects for ${SPARSE_COMMITS} commits) x ${(dayS / meanGapS).toFixed(0)} commits, plus one ${(snapF.size / MB).toFixed(1)} MB snapshot a day (default --snapshot-interval 24h) and ${sparseWalSnaps.toFixed(1)} a day by --snapshot-wal-ratio (one per ${formatBytes(walSnapLimit)} of WAL: ${((segA.bodyBytes / SPARSE_COMMITS) * (dayS / meanGapS) / MB).toFixed(0)} MB of WAL a day); no heartbeats while commits flow`,
    });
    rows.push({
      name: 'pitr.1000cps.bytes-per-day',
      value: round(steadyPerDay / MB, 0),
      unit: 'MB/day',
      how: `the 1,000 commits/s workload extrapolated to a day: ${steadyPerCommit.toFixed(0)} B of segment per commit in the file replica (${steadyFile.seg.count} objects in the first generation, --sync-interval 0) x 86.4 M commits, plus one ${(steadyFile.snap.size / MB).toFixed(1)} MB snapshot a day and ${steadyWalSnaps.toFixed(0)} a day by --snapshot-wal-ratio (one per ${formatBytes(walSnapLimit)} of WAL: ${((steadyFile.seg.bodyBytes / steadyCommits) * STEADY_RATE * dayS / 1e9).toFixed(0)} GB of WAL a day; ${((steadyWalSnaps * steadyFile.snap.size) / 1e9).toFixed(0)} GB) (extra snapshots from generation breaks not counted). pitr keeps every transaction's pages, so its bytes grow with the write volume; a dump's with the database size`,
    });
    rows.push({ name: 'pitr.sparse.bytes-per-day.vs-cron-1h', value: round(sparsePerDay / (24 * gz), 3), unit: 'x', how: 'pitr bytes/day for the sparse workload / cron every 1 h bytes/day, same database, same run' });
    rows.push({ name: 'pitr.1000cps.bytes-per-day.vs-cron-1h', value: round(steadyPerDay / (24 * gz), 2), unit: 'x', how: 'pitr bytes/day at 1,000 commits/s / cron every 1 h bytes/day, same database, same run' });
    for (const hours of [1, 6, 24]) {
      rows.push({ name: `cron.every-${hours}h.worst-loss`, value: round(hours * 3600 + cron.seconds, 1), unit: 's', how: 'a crash just before a dump completes loses everything since the previous dump started: the interval plus the dump time' });
    }
    for (const [label, m] of [
      ['sparse.file', sparseFile],
      ['sparse.s3', sparseS3],
      ['1000cps.file', steadyFile.m],
      ['1000cps.s3', steadyS3.m],
    ] as const) {
      const max = Math.max(...m.lags);
      rows.push({
        name: `pitr.${label}.worst-loss`,
        value: round(max / 1000, 3),
        unit: 's',
        how: `largest lag observed in the ${label} run above (p99 ${round(percentile(m.lags, 99))} ms): what a crash of the machine at the worst moment would have lost; ${round((3600 * 1000) / max, 0)}x less than cron every 1 h`,
      });
    }
    return rows;
  } finally {
    await s3?.close();
    removeDir(dir);
  }
}

/** One cron-style dump: `sqlite3 DB ".backup F"` and `gzip -c F` (falls back to better-sqlite3 / zlib when missing). */
export function backupAndGzip(db: string, dir: string): { dbBytes: number; gzBytes: number; seconds: number } {
  mkdirSync(dir, { recursive: true });
  const out = join(dir, 'dump.db');
  const t0 = performance.now();
  const b = spawnSync('sqlite3', [db, `.backup '${out}'`], { encoding: 'utf8' });
  if (b.status !== 0) throw new Error(`sqlite3 .backup failed: ${b.stderr || b.error?.message}`);
  const g = spawnSync('gzip', ['-c', out], { maxBuffer: 2 ** 31 });
  const gzBytes = g.status === 0 ? (g.stdout as Buffer).length : gzipSync(readFileSync(out)).length;
  const seconds = (performance.now() - t0) / 1000;
  return { dbBytes: statSync(out).size, gzBytes, seconds };
}
