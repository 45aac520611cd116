/**
 * Issue rows 4 (agent CPU and peak RSS per GB of WAL shipped) and 5 (restore time against
 * `.backup` of the same database), from one build: a ~300 MB database written through the real
 * agent (default settings but --sync-interval 0) in a few thousand transactions, so the replica
 * holds ~800 segments, the generation's first (tiny) snapshot and the ones --snapshot-wal-ratio
 * took as the WAL outgrew the database. A copy of the replica without those later snapshots is
 * the many-segments case (as with --snapshot-wal-ratio 0).
 */
import { spawnSync } from 'node:child_process';
import { linkSync, mkdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import Database from 'better-sqlite3';
import type { BenchRow } from './bench-row.js';
import { openStorage } from '../src/storage/open-storage.js';
import { decodeSegment, iterateTransactions } from '../src/segment/index.js';
import { parseObjectKey } from '../src/segment/object-names.js';
import { startS3Server, type S3TestServer } from '../test/storage/s3-server.js';
import { readK, seedDatabase } from './app-db.js';
import { FileReplicaWatcher, MB, logProblems, procStats, removeDir, round, runCli, startAgent, startWriter, tempDir, waitForSnapshot } from './agent-harness.js';

const TXS = Number(process.env['PITR_BENCH_RESTORE_TXS'] ?? 2000);
const ROWS_PER_TX = 100;
const ROW_BYTES = 1000;
const TX_RATE = 100;
const PAUSE_EVERY = 50;
const PAUSE_MS = 200;
const WAL_FRAME_HEADER = 24;

interface RestoreJson {
  txid: number;
  segments: number;
  bytes: number;
  durationMs: number;
  phases: { planMs: number; applyMs: number; checkMs: number; syncMs: number };
}

const RUNS = 3;
/** The mid-point rows have no target: two runs each keep `npm run bench` under 5 minutes on a slow VM. */
const MID_RUNS = 2;

/**
 * Write back every dirty page before a timed run. Each run ends with an fsync, and on ext4 an fsync
 * may also wait for other files' dirty data (the previous run's output): without this, a run's
 * time depends on what ran before it.
 */
function settleDisk(): void {
  spawnSync('sync');
}

/** How the best run's wall time splits: what `pitr restore --json` reports, and the process around it. */
function phasesText(r: { wallS: number; json: RestoreJson }): string {
  const p = r.json.phases;
  const s = (ms: number): string => (ms / 1000).toFixed(2);
  return `plan ${s(p.planMs)} + fetch/inflate/apply ${s(p.applyMs)} + integrity_check ${s(p.checkMs)} + rest of fsync/rename ${s(p.syncMs)} = ${s(r.json.durationMs)} s, plus ${(r.wallS - r.json.durationMs / 1000).toFixed(2)} s of Node start, module loading and exit`;
}

/** Best of `runs` wall times of `pitr restore` (each run into a fresh OUT; the last one is kept). */
function timeRestore(replica: string, out: string, extra: string[], env: Record<string, string> = {}, runs = RUNS): { wallS: number; json: RestoreJson; all: number[] } {
  let best: { wallS: number; json: RestoreJson } | undefined;
  const all: number[] = [];
  for (let i = 0; i < runs; i++) {
    // Like the baselines: a fresh output file each run (with --force the old one would stay in the
    // page cache until the rename, and the run would write into memory the baseline got back).
    rmSync(out, { force: true });
    settleDisk();
    const r = runCli(['restore', replica, '-o', out, '--json', ...extra], env);
    all.push(r.wallMs / 1000);
    if (!best || r.wallMs / 1000 < best.wallS) best = { wallS: r.wallMs / 1000, json: JSON.parse(r.stdout) as RestoreJson };
  }
  return { ...best!, all };
}

function pageCount(path: string): number {
  const db = new Database(path, { readonly: true, fileMustExist: true });
  try {
    return db.pragma('page_count', { simple: true }) as number;
  } finally {
    db.close();
  }
}

export async function benchRestore(): Promise<BenchRow[]> {
  const dir = tempDir('restore');
  let s3: S3TestServer | undefined;
  try {
    // ---- build the database through the agent ----
    const db = join(dir, 'src', 'app.db');
    mkdirSync(join(dir, 'src'), { recursive: true });
    mkdirSync(join(dir, 'out'), { recursive: true });
    seedDatabase(db, 0);
    const replica = join(dir, 'replica');
    process.stderr.write(`  restore: writing ${TXS} transactions (~${((TXS * ROWS_PER_TX * ROW_BYTES) / MB).toFixed(0)} MB of rows) through the agent...\n`);
    const agent = startAgent([db, replica, '--state-dir', join(dir, 'state'), '--sync-interval', '0']);
    const storage = await openStorage(replica);
    const snap = await waitForSnapshot(storage, 120_000, agent);
    const watcher = new FileReplicaWatcher(replica);
    const writer = startWriter(
      ['--db', db, '--mode', 'bulk', '--count', String(TXS), '--rows', String(ROWS_PER_TX), '--row-bytes', String(ROW_BYTES), '--rate', String(TX_RATE), '--pause-every', String(PAUSE_EVERY), '--pause-ms', String(PAUSE_MS)],
      join(dir, 'commits.json'),
    );
    await writer.ready;
    const before = procStats(agent.pid);
    const t0 = performance.now();
    writer.go();
    await writer.done;
    const writeS = (performance.now() - t0) / 1000;
    await watcher.settle(1000);
    const catchUpS = (performance.now() - t0) / 1000 - writeS - 1;
    const after = procStats(agent.pid);
    watcher.close();
    const problems = logProblems(agent.stderr());
    await agent.stop();
    const generations = new Set(watcher.snapshots().map((s) => s.generation)).size;

    // WAL bytes shipped: every page image of every transaction in the replica, as a WAL frame.
    let pages = 0;
    let pageSize = 4096;
    let segmentBytes = 0;
    for (const o of await storage.list('generations/')) {
      if (!o.key.endsWith('.seg')) continue;
      segmentBytes += o.size;
      const { header, body } = await decodeSegment(readFileSync(join(replica, ...o.key.split('/'))), o.key);
      pageSize = header.pageSize;
      for (const tx of iterateTransactions(body, header.pageSize)) pages += tx.pages.length;
    }
    const walBytes = pages * (pageSize + WAL_FRAME_HEADER);
    // The many-segments replica: the same objects (hard links) minus every snapshot but the first.
    const all = await storage.list('generations/');
    const snapTxids = all.flatMap((o) => {
      const n = parseObjectKey(o.key);
      return n?.kind === 'snapshot' ? [n.txid] : [];
    });
    const firstSnap = Math.min(...snapTxids);
    const segReplica = join(dir, 'replica-segments');
    for (const o of all) {
      const n = parseObjectKey(o.key);
      if (n?.kind === 'snapshot' && n.txid !== firstSnap) continue;
      const to = join(segReplica, ...o.key.split('/'));
      mkdirSync(dirname(to), { recursive: true });
      linkSync(join(replica, ...o.key.split('/')), to);
    }
    const segments = watcher.segments().length;
    const cpuS = after.cpuSeconds - before.cpuSeconds;
    const buildHow =
      `real agent (\`pitr replicate DB DIR --sync-interval 0\`) while an app-writer child commits ${TXS} transactions of ${ROWS_PER_TX} rows x ~${ROW_BYTES} B of text (indexed) into an empty database, ` +
      `paced at ${TX_RATE} tx/s with a ${PAUSE_MS} ms pause every ${PAUSE_EVERY} (paced so the WAL is recycled and the run stays one generation; see the lag rows) in ${writeS.toFixed(1)} s, replica caught up ${Math.max(0, catchUpS).toFixed(1)} s later; ` +
      `${(walBytes / MB).toFixed(0)} MB of WAL shipped (${pages} page images x (${pageSize} + 24) B, counted by decoding every segment in the replica), ${segments} segments, ${(segmentBytes / MB).toFixed(0)} MB stored, ${snapTxids.length} snapshots (at generation start, then by --snapshot-wal-ratio 1 at txids ${snapTxids.filter((t) => t !== firstSnap).sort((a, b) => a - b).join(', ')}); ${generations} generation(s); ${problems}`;

    // ---- baselines: .backup of the same database ----
    const src = new Database(db);
    src.pragma('wal_checkpoint(TRUNCATE)');
    src.close();
    const dbBytes = statSync(db).size;
    const dbPages = pageCount(db);
    process.stderr.write(`  restore: baselines and restores of the ${(dbBytes / MB).toFixed(0)} MB database...\n`);
    const cliAll: number[] = [];
    const bs3All: number[] = [];
    for (let i = 0; i < RUNS; i++) {
      const cliOut = join(dir, 'out', 'backup-cli.db');
      const bs3Out = join(dir, 'out', 'backup-bs3.db');
      rmSync(cliOut, { force: true });
      rmSync(bs3Out, { force: true });
      settleDisk();
      const t1 = performance.now();
      const bk = spawnSync('sqlite3', [db, `.backup '${cliOut}'`], { encoding: 'utf8' });
      cliAll.push((performance.now() - t1) / 1000);
      if (bk.status !== 0) throw new Error(`sqlite3 .backup failed: ${bk.stderr}`);
      settleDisk();
      const srcDb = new Database(db, { readonly: true });
      const t2 = performance.now();
      await srcDb.backup(bs3Out);
      bs3All.push((performance.now() - t2) / 1000);
      srcDb.close();
    }
    const cliBackupS = Math.min(...cliAll);
    const bs3BackupS = Math.min(...bs3All);

    // ---- restores from the file replica ----
    const mid = snap.txid + Math.floor(TXS / 2);
    const latestFile = timeRestore(replica, join(dir, 'out', 'latest-file.db'), []);
    if (readK(join(dir, 'out', 'latest-file.db')) !== TXS || pageCount(join(dir, 'out', 'latest-file.db')) !== dbPages) throw new Error('latest restore from file does not match the source');
    const segFile = timeRestore(segReplica, join(dir, 'out', 'segments-file.db'), []);
    if (readK(join(dir, 'out', 'segments-file.db')) !== TXS || pageCount(join(dir, 'out', 'segments-file.db')) !== dbPages) throw new Error('latest restore from segments does not match the source');
    const midFile = timeRestore(replica, join(dir, 'out', 'mid-file.db'), ['--txid', String(mid)], {}, MID_RUNS);
    if (readK(join(dir, 'out', 'mid-file.db')) !== mid - snap.txid) throw new Error('mid restore from file holds the wrong commit');
    // The other end of the range: the newest snapshot is recent, as right after a snapshot
    // (--snapshot-interval) or when a replica is first attached. A second agent with default
    // settings snapshots the finished database into a new replica and is stopped.
    const snapReplica = join(dir, 'replica-snap');
    const snapAgent = startAgent([db, snapReplica, '--state-dir', join(dir, 'state-snap')]);
    const snapStorage = await openStorage(snapReplica);
    await waitForSnapshot(snapStorage, 120_000, snapAgent);
    await snapAgent.stop();
    await snapStorage.close();
    const snapFile = timeRestore(snapReplica, join(dir, 'out', 'snap-file.db'), []);
    if (readK(join(dir, 'out', 'snap-file.db')) !== TXS || pageCount(join(dir, 'out', 'snap-file.db')) !== dbPages) throw new Error('restore from a fresh snapshot does not match the source');

    const ic = new Database(join(dir, 'out', 'latest-file.db'), { readonly: true });
    const t3 = performance.now();
    ic.pragma('integrity_check');
    const integrityS = (performance.now() - t3) / 1000;
    ic.close();

    // ---- the same replica in S3 (copied object by object), restores from there ----
    s3 = await startS3Server({ bucket: 'pitr-bench' });
    Object.assign(process.env, s3.env);
    const s3Url = s3.url('restore');
    const s3Store = await openStorage(s3Url);
    const objects = await storage.list('generations/');
    let next = 0;
    await Promise.all(
      Array.from({ length: 8 }, async () => {
        while (next < objects.length) {
          const o = objects[next++]!;
          await s3Store.put(o.key, readFileSync(join(replica, ...o.key.split('/'))));
        }
      }),
    );
    await s3Store.close();
    await storage.close();
    const latestS3 = timeRestore(s3Url, join(dir, 'out', 'latest-s3.db'), [], s3.env);
    if (readK(join(dir, 'out', 'latest-s3.db')) !== TXS) throw new Error('latest restore from S3 does not match the source');
    const midS3 = timeRestore(s3Url, join(dir, 'out', 'mid-s3.db'), ['--txid', String(mid)], s3.env, MID_RUNS);
    if (readK(join(dir, 'out', 'mid-s3.db')) !== mid - snap.txid) throw new Error('mid restore from S3 holds the wrong commit');

    const perGb = 1e9 / walBytes;
    const runs = (xs: number[]): string => `best of ${xs.length}: ${xs.map((x) => x.toFixed(2)).join(' / ')} s`;
    const restoreHow = (r: { wallS: number; json: RestoreJson; all: number[] }, from: string, target: string): string =>
      `${runs(r.all)}; wall time of \`pitr restore ${from} -o OUT --json${target}\` as a child process (Node start, one LIST, snapshot + ${r.json.segments} segments = ${(r.json.bytes / MB).toFixed(0)} MB fetched and inflated up to 16 objects ahead, checksums, newest image of each page written in sorted runs, fsync overlapped with PRAGMA integrity_check, rename; \`sync\` before each run; the best run's own report: ${phasesText(r)}); ` +
      `output checked (meta.k and page count); the ${(dbBytes / MB).toFixed(0)} MB database built as in agent.cpu-per-gb-wal`;
    const baseHow = `${runs(cliAll)}; \`sqlite3 SRC ".backup OUT"\` of the same ${(dbBytes / MB).toFixed(0)} MB source (checkpointed, in page cache, dirty pages written back with \`sync\` before each run), wall time of the sqlite3 ${spawnSync('sqlite3', ['--version'], { encoding: 'utf8' }).stdout.split(' ')[0]} process`;
    return [
      { name: 'agent.cpu-per-gb-wal', value: round(cpuS * perGb, 1), unit: 'cpu-s/GB', how: `agent utime+stime (/proc/PID/stat) from the writer's start until the replica was caught up (${cpuS.toFixed(1)} s), scaled from ${(walBytes / MB).toFixed(0)} MB to 1 GB; ${buildHow}` },
      { name: 'agent.peak-rss', value: round(after.peakRssBytes / MB, 0), unit: 'MB', how: `VmHWM of the agent after the same build (peak over its whole life, startup snapshot included; does not scale with WAL volume, so not divided per GB); target < 150 MB` },
      { name: 'backup.sqlite3-cli', value: round(cliBackupS, 2), unit: 's', how: baseHow },
      { name: 'backup.better-sqlite3', value: round(bs3BackupS, 2), unit: 's', how: `${runs(bs3All)}; better-sqlite3 \`db.backup(OUT)\` (default: 100 pages per step, yielding between steps) of the same source, in the bench process` },
      { name: 'restore.latest.file', value: round(latestFile.wallS, 2), unit: 's', how: restoreHow(latestFile, 'DIR', '') },
      { name: 'restore.latest.file/backup', value: round(latestFile.wallS / cliBackupS, 2), unit: 'x', how: 'restore.latest.file / backup.sqlite3-cli, same run; target <= 2' },
      { name: 'restore.segments.file', value: round(segFile.wallS, 2), unit: 's', how: `${restoreHow(segFile, 'DIR', '')}; here from a copy of the replica holding only the generation's first (tiny) snapshot, as with --snapshot-wal-ratio 0 and no --snapshot-interval snapshot yet: every page comes from segments` },
      { name: 'restore.segments.file/backup', value: round(segFile.wallS / cliBackupS, 2), unit: 'x', how: 'restore.segments.file / backup.sqlite3-cli, same run (the default --snapshot-wal-ratio 1 keeps a replica out of this case)' },
      { name: 'restore.mid.file', value: round(midFile.wallS, 2), unit: 's', how: restoreHow(midFile, 'DIR', ` --txid ${mid}`) },
      { name: 'restore.snapshot.file', value: round(snapFile.wallS, 2), unit: 's', how: `${restoreHow(snapFile, 'DIR', '')}; here the replica holds a snapshot of the finished database (taken by a second agent with default settings) and no segments: the latest state right after a snapshot` },
      { name: 'restore.snapshot.file/backup', value: round(snapFile.wallS / cliBackupS, 2), unit: 'x', how: 'restore.snapshot.file / backup.sqlite3-cli, same run; target <= 2' },
      { name: 'restore.latest.s3', value: round(latestS3.wallS, 2), unit: 's', how: `${restoreHow(latestS3, 'S3', '')}; from loopback s3rver (the file replica's objects copied there unchanged)` },
      { name: 'restore.latest.s3/backup', value: round(latestS3.wallS / cliBackupS, 2), unit: 'x', how: 'restore.latest.s3 / backup.sqlite3-cli, same run' },
      { name: 'restore.mid.s3', value: round(midS3.wallS, 2), unit: 's', how: restoreHow(midS3, 'S3', ` --txid ${mid}`) },
      { name: 'restore.integrity-check', value: round(integrityS, 2), unit: 's', how: `PRAGMA integrity_check alone on the restored ${(dbBytes / MB).toFixed(0)} MB file (better-sqlite3, page cache warm): the part of every restore that .backup does not do` },
    ];
  } finally {
    await s3?.close();
    removeDir(dir);
  }
}
