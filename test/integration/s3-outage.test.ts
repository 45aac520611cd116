/**
 * The round trip against S3 (s3rver, a real S3 protocol server on loopback), with the store going
 * down mid-run: the agent replicates to an S3 replica and a file replica while the app writes;
 * the S3 server is killed for several seconds and brought back. The file replica must keep up
 * meanwhile, the S3 replica must catch up afterwards with no hole, the outage must be logged once,
 * and every sampled point restored from S3 must be exactly the app's state (and the same as from
 * the file replica). Then restore/list against S3 must fail the way they do for a directory.
 */
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { closeSync, existsSync, fstatSync, mkdirSync, openSync, readFileSync, readSync, readdirSync, rmSync, writeFileSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { openAppDatabase } from '../fixtures/app-schema.js';
import { readWriterLog, type WriterLog } from '../fixtures/writer-log.js';
import { startS3Server, type S3TestServer } from '../storage/s3-server.js';
import {
  describeRun,
  expectCliError,
  inspectDatabase,
  listFilesRecursive,
  makeTempDir,
  outputLeftovers,
  parseCliError,
  removeTempDir,
  runCli,
  runCliJson,
  settleLimit,
  spread,
  startAgent,
  startWriter,
  trace,
  valuesOrFail,
  waitUntil,
  type Agent,
  type DatabaseState,
  type DryRunOutput,
  type GenerationInfo,
  type ListOutput,
  type RestoreOutput,
  type RunResult,
} from './helpers.js';

const COUNT = Number(process.env['PITR_IT_S3_COUNT'] ?? 250);
const SEED = Number(process.env['PITR_IT_SEED'] ?? 20261123);
/** How long the S3 server stays down (at least; longer if the file-replica check needs it). */
const OUTAGE_MS = 8_000;
const PARALLEL_RESTORES = 3;
const BUCKET = 'pitr-outage';
const PREFIX = 'apps/app-1';

interface ListWindow {
  firstTxid: number;
  lastTxid: number;
  firstCommitTime: string;
  lastCommitTime: string;
}
type ListedGeneration = GenerationInfo & { windows: ListWindow[] };
interface ListJson extends ListOutput {
  generations: ListedGeneration[];
}

interface Restored extends DatabaseState {
  txid: number;
  result: RestoreOutput;
}

interface LogLine {
  level?: string;
  msg?: string;
  replica?: string;
  [k: string]: unknown;
}

describe('S3 replica', { timeout: 5 * 60_000 }, () => {
  let server: S3TestServer | undefined;
  let env: Record<string, string> = {};
  let tmp = '';
  let dbPath = '';
  let replicaDir = '';
  let s3Url = '';
  let logPath = '';
  let agent: Agent | undefined;
  let writerChild: ChildProcess | undefined;
  let outCounter = 0;

  let log: WriterLog;
  let writerResult: RunResult;
  let stoppedAgent: RunResult;
  let s3List: ListJson;
  let fileList: ListJson;
  let seqAtStop = -1;
  let seqAtRestart = -1;
  let writerRunningAtRestart = false;
  let outageMs = 0;
  let fileDuringOutage: (DatabaseState & { txid: number }) | undefined;
  let listWhileDown: RunResult | undefined;
  let unfinishedWrites: string[] = [];
  const s3ByTxid = new Map<number, Promise<Restored>>();
  const fileByTxid = new Map<number, Promise<Restored>>();

  before(
    async () => {
      tmp = await makeTempDir('pitr-s3-outage-');
      dbPath = join(tmp, 'app.db');
      replicaDir = join(tmp, 'replica');
      logPath = join(tmp, 'writer.jsonl');
      mkdirSync(join(tmp, 'out'));
      server = await startS3Server({ bucket: BUCKET });
      s3Url = `${server.url(PREFIX)}&force-path-style=true`;
      // The SDK's one-time Node 20 warning would precede "pitr: error:" on stderr.
      env = { ...server.env, AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: 'true' };
      trace(`s3rver at ${server.endpoint}, data in ${server.directory}`);
      openAppDatabase(dbPath).close();

      agent = startAgent(
        [dbPath, s3Url, replicaDir, '--sync-interval', '0', '--snapshot-interval', '3s', '--state-dir', join(tmp, 'state')],
        { env },
      );
      for (const replica of [s3Url, replicaDir]) {
        await waitUntil(`${replica} to list a generation`, async () => {
          if (agent?.child.exitCode !== null) throw new Error(`agent exited\n${describeRun(await (agent as Agent).result)}`);
          const l = await runCliJson<ListOutput>(['list', replica, '--json'], { env, timeoutMs: 30_000 });
          return l.generations.length > 0;
        });
      }

      trace('both replicas list a generation; starting the writer');
      const writer = startWriter({ db: dbPath, log: logPath, count: COUNT, seed: SEED, pauseEvery: 10, pauseMs: 400 });
      writerChild = writer.child;
      let writerExited = false;
      void writer.result.then(() => (writerExited = true));

      const stopAt = Math.floor(COUNT * 0.3);
      await waitUntil(`the writer to commit ${stopAt} transactions`, async () => writerExited || (await readWriterLog(logPath)).lastSeq >= stopAt, {
        timeoutMs: 3 * 60_000,
      });
      if (writerExited) assert.fail(`writer ended before the S3 outage could start\n${describeRun(await writer.result)}`);

      // ---- the outage ----
      await server.stop();
      const outageStart = Date.now();
      unfinishedWrites = removeUnfinishedWrites(server.directory);
      if (unfinishedWrites.length > 0) trace(`removed s3rver's unfinished writes: ${unfinishedWrites.join(', ')}`);
      // Read after the kill: the writer logs seq k after committing it, so seq >= this + 2 was
      // committed after the kill.
      seqAtStop = (await readWriterLog(logPath)).lastSeq;
      trace(`S3 down at seq ${seqAtStop}`);
      const listing = runCli(['list', s3Url, '--json'], { env, timeoutMs: 90_000 });
      let probe = 0;
      fileDuringOutage = await waitUntil(
        'the file replica to restore a commit made while S3 is down',
        async () => {
          const out = join(tmp, 'out', `outage-${probe++}.db`);
          const r = await runCliJson<RestoreOutput>(['restore', replicaDir, '-o', out, '--json'], { env });
          const state = inspectDatabase(out);
          return state.seq >= seqAtStop + 2 ? { ...state, txid: r.txid } : undefined;
        },
        { timeoutMs: 90_000, intervalMs: 300 },
      );
      trace(`file replica restored seq ${fileDuringOutage.seq} during the outage`);
      listWhileDown = await listing;
      const left = outageStart + OUTAGE_MS - Date.now();
      if (left > 0) await sleep(left);
      outageMs = Date.now() - outageStart;
      seqAtRestart = (await readWriterLog(logPath)).lastSeq;
      writerRunningAtRestart = !writerExited;
      await server.restart();
      trace(`S3 back after ${outageMs} ms at seq ${seqAtRestart}`);

      writerResult = await writer.result;
      assert.equal(writerResult.code, 0, describeRun(writerResult));
      log = await readWriterLog(logPath);
      const final = log.commits.get(log.lastSeq);
      assert.ok(final !== undefined, 'writer logged no final commit');
      trace('writer done; waiting for S3 to catch up');
      await waitUntil(
        `the S3 replica to restore the final state (seq ${log.lastSeq})`,
        async () => {
          const out = join(tmp, 'out', `catchup-${probe++}.db`);
          await runCliJson<RestoreOutput>(['restore', s3Url, '-o', out, '--json'], { env });
          return inspectDatabase(out).digest === final.digest;
        },
        { timeoutMs: 120_000, intervalMs: 500 },
      );
      stoppedAgent = await agent.stop('SIGTERM', 120_000);
      writeFileSync(join(tmp, 'agent.stderr.jsonl'), stoppedAgent.stderr);
      trace('agent stopped');
      s3List = await runCliJson<ListJson>(['list', s3Url, '--json'], { env });
      fileList = await runCliJson<ListJson>(['list', replicaDir, '--json'], { env });
    },
    { timeout: 5 * 60_000 },
  );

  after(async () => {
    // Also when before() failed half-way: nothing may outlive the test.
    if (writerChild !== undefined && writerChild.exitCode === null && writerChild.signalCode === null) writerChild.kill('SIGKILL');
    await agent?.stop('SIGKILL', 10_000);
    await server?.close();
    if (tmp !== '') await removeTempDir(tmp);
  });

  // ---- helpers over the shared state ----

  function assertMatchesLog(r: { txid: number; seq: number; digest: string }, what = `txid ${r.txid}`): void {
    const expected = log.commits.get(r.seq);
    assert.ok(expected !== undefined, `${what} restored meta.seq ${r.seq}, which the writer never logged`);
    assert.equal(r.digest, expected.digest, `${what} (seq ${r.seq}): content differs from the app's at that commit`);
  }

  async function restoreInto(replica: string, target: string[]): Promise<{ result: RestoreOutput; state: DatabaseState }> {
    const dir = join(tmp, 'out', `r${outCounter++}`);
    mkdirSync(dir);
    const out = join(dir, 'restored.db');
    const result = await runCliJson<RestoreOutput>(['restore', replica, '-o', out, ...target, '--json'], { env });
    assert.deepEqual(readdirSync(dir), ['restored.db'], `restore ${replica} ${target.join(' ')} left other files`);
    assert.equal(Date.parse(result.commitTime), result.commitTimeMs);
    assert.ok(result.snapshotTxid <= result.txid, `snapshotTxid ${result.snapshotTxid} > txid ${result.txid}`);
    const state = inspectDatabase(out);
    assert.equal(state.integrity, 'ok', `integrity_check of restore ${replica} ${target.join(' ')}`);
    return { result, state };
  }

  function restoreTxid(replica: 's3' | 'file', txid: number): Promise<Restored> {
    const cache = replica === 's3' ? s3ByTxid : fileByTxid;
    let p = cache.get(txid);
    if (p === undefined) {
      p = restoreInto(replica === 's3' ? s3Url : replicaDir, ['--txid', String(txid)]).then(({ result, state }) => {
        assert.equal(result.txid, txid, `restore ${replica} --txid ${txid} reported txid ${result.txid}`);
        return { txid, result, ...state };
      });
      cache.set(txid, p);
    }
    return p;
  }

  async function dryRun(replica: string, target: string[]): Promise<DryRunOutput> {
    const dir = join(tmp, 'out', `d${outCounter++}`);
    mkdirSync(dir);
    const plan = await runCliJson<DryRunOutput>(['restore', replica, '-o', join(dir, 'never.db'), ...target, '--dry-run', '--json'], { env });
    assert.deepEqual(readdirSync(dir), [], `--dry-run ${target.join(' ')} wrote something`);
    return plan;
  }

  /** Keys (relative to the replica root) of every object s3rver holds under the prefix, from its directory. */
  function storedS3Keys(): Set<string> {
    const root = join((server as S3TestServer).directory, BUCKET, ...PREFIX.split('/'));
    const suffix = '._S3rver_object';
    return new Set(listFilesRecursive(root).filter((f) => f.endsWith(suffix)).map((f) => f.slice(0, -suffix.length)));
  }

  function agentLogLines(): LogLine[] {
    return stoppedAgent.stderr
      .split('\n')
      .filter((l) => l.trim().startsWith('{'))
      .map((l) => JSON.parse(l) as LogLine);
  }

  const isS3Line = (l: LogLine): boolean => typeof l.replica === 'string' && l.replica.startsWith('s3://');
  const isFileLine = (l: LogLine): boolean => typeof l.replica === 'string' && l.replica.startsWith('file://');

  // ---- 1. the round trip with an outage ----

  describe('S3 round trip with an outage', () => {
    it('the writer finished, the outage happened mid-run, and the agent exited 0 on SIGTERM', (t) => {
      t.diagnostic(`seed ${SEED}, ${COUNT} transactions; S3 down at seq ${seqAtStop} for ${outageMs} ms, back at seq ${seqAtRestart}`);
      t.diagnostic(`objects the kill left half-written in s3rver (removed): ${unfinishedWrites.length === 0 ? 'none' : unfinishedWrites.join(', ')}`);
      t.diagnostic(`S3 generations: ${JSON.stringify(s3List.generations.map((g) => [g.id, g.firstTxid, g.lastTxid, g.snapshots, g.segments]))}`);
      assert.match(writerResult.stdout, new RegExp(`^done ${COUNT}$`, 'm'));
      assert.equal(log.lastSeq, COUNT);
      assert.ok(seqAtRestart > seqAtStop + 1, `the writer committed nothing while S3 was down (${seqAtStop}..${seqAtRestart})`);
      if (!writerRunningAtRestart) t.diagnostic('note: the writer had finished before S3 came back');
      assert.ok(!stoppedAgent.timedOut, `agent did not exit after SIGTERM\n${describeRun(stoppedAgent)}`);
      assert.equal(stoppedAgent.code, 0, describeRun(stoppedAgent));
    });

    it('the file replica kept up while S3 was down', () => {
      const f = fileDuringOutage as DatabaseState & { txid: number };
      assert.ok(f.seq >= seqAtStop + 2, `file replica restored seq ${f.seq}, not one committed after the S3 kill (seq ${seqAtStop})`);
      assert.equal(f.integrity, 'ok');
      assertMatchesLog({ ...f }, `file replica during the outage, txid ${f.txid}`);
    });

    it('list on S3 while the server is down fails with STORAGE_IO instead of hanging or listing nothing', () => {
      const r = listWhileDown as RunResult;
      const err = expectCliError(r, 'STORAGE_IO');
      assert.ok(err.hint !== undefined && err.hint.length > 0, `no hint\n${describeRun(r)}`);
      assert.equal(r.stdout, '', 'a failed list printed something on stdout');
    });

    it('the upload failure is logged once for the outage, and the recovery is logged', () => {
      const lines = agentLogLines();
      const failed = lines.filter((l) => (l.msg ?? '').includes('upload to replica failed'));
      assert.equal(
        failed.filter(isS3Line).length,
        1,
        `expected exactly one "upload to replica failed" for the S3 replica:\n${failed.map((l) => JSON.stringify(l)).join('\n')}`,
      );
      assert.equal(failed.filter(isFileLine).length, 0, 'the file replica never failed');
      assert.equal(failed.length, 1, `unattributed failure lines:\n${failed.map((l) => JSON.stringify(l)).join('\n')}`);
      const failedAt = lines.indexOf(failed[0] as LogLine);
      const recovered = lines.findIndex((l, i) => i > failedAt && isS3Line(l) && (l.msg ?? '').includes('replica reachable again'));
      assert.ok(recovered > failedAt, `no "replica reachable again" for S3 after the failure:\n${lines.map((l) => JSON.stringify(l)).join('\n').slice(-6000)}`);
      // Every complete stderr line is one JSON object.
      for (const l of stoppedAgent.stderr.split('\n').filter((x) => x.trim() !== '')) {
        assert.doesNotThrow(() => JSON.parse(l), `agent stderr line is not JSON: ${l}`);
      }
    });

    it('list: each generation on S3 is one contiguous window, and S3 and file agree', (t) => {
      // One agent ran throughout, so one generation is expected; more is allowed (pitr may start
      // one when it cannot prove continuity), as long as each is whole.
      if (s3List.generations.length > 1) t.diagnostic(`note: ${s3List.generations.length} generations in one agent run`);
      assert.ok(s3List.generations.length >= 1, 'no generation on S3');
      let prevLast = -Infinity;
      for (const g of s3List.generations) {
        assert.ok(g.snapshots >= 1, `generation ${g.id} has no snapshot`);
        assert.ok(g.segments >= 1, `generation ${g.id} has no segment`);
        assert.ok(g.firstTxid > prevLast, `generation ${g.id} starts at ${g.firstTxid}, not after ${prevLast}`);
        assert.equal(g.windows.length, 1, `generation ${g.id} has a gap: windows ${JSON.stringify(g.windows)}`);
        const w = g.windows[0] as ListWindow;
        assert.equal(w.firstTxid, g.firstTxid);
        assert.equal(w.lastTxid, g.lastTxid);
        assert.ok(g.firstCommitTimeMs <= g.lastCommitTimeMs);
        prevLast = g.lastTxid;
      }
      const shape = (l: ListJson): unknown => l.generations.map((g) => ({ id: g.id, firstTxid: g.firstTxid, lastTxid: g.lastTxid, windows: g.windows }));
      assert.deepEqual(shape(s3List), shape(fileList), 'the S3 and file replicas list different windows');
      const keys = [...storedS3Keys()];
      assert.ok(keys.some((k) => /^generations\/[^/]+\/snapshots\/[^/]+\.snap$/.test(k)), `no snapshot object on S3: ${keys.join(' ')}`);
      assert.ok(keys.some((k) => /^generations\/[^/]+\/segments\/[^/]+\.seg$/.test(k)), 'no segment object on S3');
    });

    it('restore from S3 without a target gives the final state', async () => {
      const { result, state } = await restoreInto(s3Url, []);
      const last = s3List.generations.at(-1) as GenerationInfo;
      assert.equal(result.txid, last.lastTxid);
      assert.equal(result.generation, last.id);
      assert.equal(state.seq, COUNT);
      assertMatchesLog({ txid: result.txid, ...state });
    });

    it('restore --txid from S3 at spread txids matches the app, and the file replica restores the same', async () => {
      const per = Math.max(3, Math.ceil(15 / s3List.generations.length));
      // Plus the point the file replica reached during the outage: S3 received it only afterwards.
      const duringOutage = (fileDuringOutage as { txid: number }).txid;
      const txids = [...new Set([...s3List.generations.flatMap((g) => spread(g.firstTxid, g.lastTxid, per)), duringOutage])].sort((a, b) => a - b);
      const s3 = valuesOrFail(
        'restore --txid from S3',
        txids,
        await settleLimit(txids, PARALLEL_RESTORES, async (txid) => {
          const r = await restoreTxid('s3', txid);
          assertMatchesLog(r);
          return r;
        }),
      );
      for (let i = 1; i < s3.length; i++) {
        const [a, b] = [s3[i - 1] as Restored, s3[i] as Restored];
        assert.ok(b.seq >= a.seq, `txid ${b.txid} has seq ${b.seq} < seq ${a.seq} at txid ${a.txid}`);
      }
      // Commits made while S3 was down must be among the sampled points.
      assert.ok(s3.some((r) => r.seq > seqAtStop + 1 && r.seq <= seqAtRestart), 'no sampled txid was committed during the outage');
      const file = valuesOrFail('restore --txid from the file replica', txids, await settleLimit(txids, PARALLEL_RESTORES, (txid) => restoreTxid('file', txid)));
      for (let i = 0; i < txids.length; i++) {
        const [a, b] = [s3[i] as Restored, file[i] as Restored];
        assert.equal(a.digest, b.digest, `txid ${a.txid}: S3 restored seq ${a.seq}, file restored seq ${b.seq}`);
      }
    });

    it('restore --to T from S3 picks the last transaction committed at or before T', async () => {
      const per = Math.max(2, Math.ceil(6 / s3List.generations.length));
      const times = s3List.generations.flatMap((g) => spread(g.firstCommitTimeMs, g.lastCommitTimeMs, per));
      const txids = valuesOrFail(
        'restore --to from S3',
        times.map((t) => new Date(t).toISOString()),
        await settleLimit(times, PARALLEL_RESTORES, async (t) => {
          const iso = new Date(t).toISOString();
          const plan = await dryRun(s3Url, ['--to', iso]);
          assert.ok(plan.commitTimeMs <= t, `--to ${iso} chose txid ${plan.txid} committed at ${plan.commitTime}`);
          const g = s3List.generations.find((x) => x.id === plan.generation);
          assert.ok(g !== undefined, `plan names unknown generation ${plan.generation}`);
          if (plan.txid < g.lastTxid) {
            const next = await dryRun(s3Url, ['--txid', String(plan.txid + 1)]);
            assert.ok(next.commitTimeMs > t, `--to ${iso} chose txid ${plan.txid}, but txid ${plan.txid + 1} committed at ${next.commitTime}`);
          }
          const viaTime = await restoreInto(s3Url, ['--to', iso]);
          assert.equal(viaTime.result.txid, plan.txid, `--to ${iso}: dry run said txid ${plan.txid}, restore did ${viaTime.result.txid}`);
          assertMatchesLog({ txid: plan.txid, ...viaTime.state }, `--to ${iso} (txid ${plan.txid})`);
          const viaTxid = await restoreTxid('file', plan.txid);
          assert.equal(viaTime.state.digest, viaTxid.digest, `--to ${iso} from S3 and --txid ${plan.txid} from the file replica differ`);
          return plan.txid;
        }),
      );
      assert.ok(new Set(txids).size > 1, 'every time target resolved to the same txid');
    });
  });

  // ---- 2. the error paths, like a file replica's ----

  describe('restore/list on S3 behave like file', () => {
    it('--dry-run --json prints a plan of stored objects covering the target without a gap, and writes nothing', async () => {
      const keys = storedS3Keys();
      const last = s3List.generations.at(-1) as GenerationInfo;
      const mid = Math.floor((last.firstTxid + last.lastTxid) / 2);
      for (const target of [[], ['--txid', String(mid)]]) {
        const plan = await dryRun(s3Url, target);
        const filePlan = await dryRun(replicaDir, target);
        assert.equal(plan.dryRun, true);
        assert.equal(plan.generation, filePlan.generation);
        assert.equal(plan.txid, filePlan.txid);
        assert.equal(plan.txid, target.length === 0 ? last.lastTxid : mid);
        assert.ok(keys.has(plan.snapshot.key), `snapshot ${plan.snapshot.key} is not stored on S3`);
        let covered = plan.snapshot.txid;
        for (const s of [...plan.segments].sort((a, b) => a.firstTxid - b.firstTxid)) {
          assert.ok(keys.has(s.key), `segment ${s.key} is not stored on S3`);
          assert.ok(s.firstTxid <= covered + 1, `plan for txid ${plan.txid} has a gap before ${s.key}`);
          covered = Math.max(covered, s.lastTxid);
        }
        assert.ok(covered >= plan.txid, `plan for txid ${plan.txid} stops at ${covered}`);
        assert.equal(plan.bytes, plan.snapshot.size + plan.segments.reduce((n, s) => n + s.size, 0));
      }
    });

    it('an existing output is refused without --force and replaced with it', async () => {
      const dir = join(tmp, 'out', 'exists');
      mkdirSync(dir);
      const out = join(dir, 'app.db');
      writeFileSync(out, 'precious');
      const r = await runCli(['restore', s3Url, '-o', out], { env });
      expectCliError(r, 'OUTPUT_EXISTS');
      assert.equal(readFileSync(out, 'utf8'), 'precious', 'the existing output was touched');
      assert.deepEqual(readdirSync(dir), ['app.db']);
      const forced = await runCliJson<RestoreOutput>(['restore', s3Url, '-o', out, '--force', '--json'], { env });
      const state = inspectDatabase(out);
      assert.equal(state.integrity, 'ok');
      assertMatchesLog({ txid: forced.txid, ...state });
    });

    it('a missing bucket is REPLICA_NOT_FOUND, like a missing directory', async () => {
      const missing = s3Url.replace(`s3://${BUCKET}/`, 's3://nosuchbucket/');
      assert.notEqual(missing, s3Url);
      const out = join(tmp, 'out', 'missing.db');
      for (const args of [['restore', missing, '-o', out], ['list', missing], ['list', missing, '--json']]) {
        const r = await runCli(args, { env, timeoutMs: 60_000 });
        expectCliError(r, 'REPLICA_NOT_FOUND');
      }
      const dirMissing = await runCli(['restore', join(tmp, 'no-such-dir'), '-o', out], { env });
      expectCliError(dirMissing, 'REPLICA_NOT_FOUND');
      assert.deepEqual(outputLeftovers(out), []);
    });

    it('an empty prefix in an existing bucket behaves like an empty directory', async (t) => {
      const empty = s3Url.replace(`/${PREFIX}?`, '/nothing-here/yet?');
      assert.notEqual(empty, s3Url);
      const emptyDir = join(tmp, 'empty-replica');
      mkdirSync(emptyDir);
      const out = join(tmp, 'out', 'empty.db');
      const outcome = async (replica: string, args: string[]): Promise<string> => {
        const r = await runCli([args[0] as string, replica, ...args.slice(1)], { env, timeoutMs: 60_000 });
        if (r.code === 0) return `exit 0: ${r.stdout.trim()}`;
        const err = parseCliError(r.stderr);
        assert.ok(err !== undefined, `unparseable error\n${describeRun(r)}`);
        return err.code;
      };
      for (const args of [['restore', '-o', out], ['list'], ['list', '--json']]) {
        const [s3, file] = [await outcome(empty, args), await outcome(emptyDir, args)];
        t.diagnostic(`${args.join(' ')}: S3 ${s3}; file ${file}`);
        assert.equal(s3.replace(/"replica":"[^"]*"/, '"replica":R'), file.replace(/"replica":"[^"]*"/, '"replica":R'), `${args.join(' ')}`);
      }
      // The contract: an empty replica is refused with REPLICA_EMPTY, not a crash or an empty file.
      expectCliError(await runCli(['restore', empty, '-o', out], { env }), 'REPLICA_EMPTY');
      expectCliError(await runCli(['list', empty], { env }), 'REPLICA_EMPTY');
      assert.deepEqual(outputLeftovers(out), []);
    });

    // Last: it damages the S3 replica.
    it('a corrupted segment object fails the restore with OBJECT_CORRUPT naming it, and writes nothing', async () => {
      let plan = await dryRun(s3Url, []);
      if (plan.segments.length === 0) {
        const g = s3List.generations.at(-1) as GenerationInfo;
        for (const txid of spread(g.firstTxid, g.lastTxid, 9).reverse()) {
          plan = await dryRun(s3Url, ['--txid', String(txid)]);
          if (plan.segments.length > 0) break;
        }
      }
      assert.ok(plan.segments.length > 0, 'found no plan that needs a segment');
      const victim = plan.segments[Math.floor(plan.segments.length / 2)] as DryRunOutput['segments'][number];
      const file = listFilesRecursive(join((server as S3TestServer).directory, BUCKET))
        .filter((f) => f.includes(victim.key) && f.endsWith('._S3rver_object'))
        .map((f) => join((server as S3TestServer).directory, BUCKET, f));
      assert.equal(file.length, 1, `expected one s3rver file for ${victim.key}: ${file.join(', ')}`);
      flipMiddleByte(file[0] as string);

      const dir = join(tmp, 'out', 'corrupt');
      mkdirSync(dir);
      const out = join(dir, 'app.db');
      const target = plan.txid === (s3List.generations.at(-1) as GenerationInfo).lastTxid ? [] : ['--txid', String(plan.txid)];
      const r = await runCli(['restore', s3Url, '-o', out, ...target], { env });
      const err = expectCliError(r, 'OBJECT_CORRUPT');
      assert.ok(err.message.includes(victim.key), `the error does not name ${victim.key}: ${err.message}`);
      assert.equal(r.stdout, '');
      assert.ok(!existsSync(out), 'a failed restore left OUT');
      assert.deepEqual(readdirSync(dir), [], 'a failed restore left files next to OUT');
      // The file replica still restores that point.
      const fromFile = await restoreInto(replicaDir, target);
      assertMatchesLog({ txid: fromFile.result.txid, ...fromFile.state });
    });
  });
});

/**
 * s3rver writes an object's bytes straight to its final file and its .md5 sidecar only after the
 * last byte, so a SIGKILL mid-PUT leaves a truncated object that it serves as complete after a
 * restart. Real S3 publishes an object only when its PUT (or CompleteMultipartUpload) succeeds, and
 * the client saw that PUT fail; removing such files makes the harness behave like S3 again.
 * Returns the removed files, relative to `directory`.
 */
function removeUnfinishedWrites(directory: string): string[] {
  const removed: string[] = [];
  for (const f of listFilesRecursive(directory)) {
    if (f.endsWith('._S3rver_object') && !existsSync(join(directory, `${f}.md5`))) {
      rmSync(join(directory, f));
      removed.push(f);
    }
  }
  return removed;
}

/** Inverts one byte in the middle of a file, keeping its size. */
function flipMiddleByte(path: string): void {
  const fd = openSync(path, 'r+');
  try {
    const size = fstatSync(fd).size;
    assert.ok(size > 0, `${path} is empty`);
    const at = Math.floor(size / 2);
    const b = Buffer.alloc(1);
    readSync(fd, b, 0, 1, at);
    b[0] = (b[0] as number) ^ 0xff;
    writeSync(fd, b, 0, 1, at);
  } finally {
    closeSync(fd);
  }
}
