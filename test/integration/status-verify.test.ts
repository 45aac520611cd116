/**
 * `pitr status` and `pitr verify` against the real CLI: a real agent process replicates a database
 * the test process writes to (playing the app); the replica is a directory, so objects can be
 * damaged on purpose.
 */
import assert from 'node:assert/strict';
import { mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { pathToFileURL } from 'node:url';
import { after, before, describe, it } from 'node:test';
import BetterSqlite3 from 'better-sqlite3';
import type Database from 'better-sqlite3';
import { openAppDatabase, readSeq, appCommit } from '../fixtures/app-schema.js';
import { digestDatabase } from '../fixtures/digest.js';
import {
  describeRun,
  expectCliError,
  inspectDatabase,
  listFilesRecursive,
  makeTempDir,
  parseCliError,
  removeTempDir,
  runCli,
  runCliJson,
  startAgent,
  waitUntil,
  type Agent,
  type ListOutput,
  type RestoreOutput,
  type RunResult,
} from './helpers.js';

interface StatusOutput {
  replica: string;
  empty: boolean;
  generation: string | null;
  txid: number | null;
  commitTime: string | null;
  commitTimeMs: number | null;
  confirmedBy: 'heartbeat' | 'commit' | null;
  confirmedAtMs: number | null;
  ageMs: number | null;
  heartbeat: { txid: number; timeMs: number } | null;
  windows: { firstTxid: number; lastTxid: number; firstCommitTimeMs: number; lastCommitTimeMs: number }[];
  generations: number;
  snapshots: number;
  newestSnapshot: { key: string; txid: number; ageMs: number } | null;
  segments: number;
  objects: number;
  bytes: number;
  bytesDayAgo: number;
  bytesChange24h: number;
  bytesChangeNote: string;
  check?: { status: string; maxAgeMs: number };
}

interface VerifyOutput {
  ok: boolean;
  generation: string | null;
  txid: number;
  commitTimeMs: number | null;
  objectsChecked: number;
  bytesChecked: number;
  integrity: string;
  content: 'match' | 'mismatch' | 'skipped';
  contentNote: string | null;
  contentTxid: number | null;
  problems: { check: string; object?: string; code: string; message: string }[];
}

const commit = appCommit;

function inspectPages(path: string): { pages: number; pageSize: number } {
  const d = new BetterSqlite3(path, { readonly: true, fileMustExist: true });
  try {
    return { pages: Number(d.pragma('page_count', { simple: true })), pageSize: Number(d.pragma('page_size', { simple: true })) };
  } finally {
    d.close();
  }
}

/** Flip one bit in the middle of a file; returns the original bytes to put back. */
function flipMiddleByte(path: string): Buffer {
  const original = readFileSync(path);
  const damaged = Buffer.from(original);
  const at = Math.floor(damaged.length / 2);
  damaged[at] = (damaged[at] as number) ^ 0x01;
  writeFileSync(path, damaged);
  return original;
}

describe('pitr status and pitr verify', () => {
  let dir: string;
  let dbPath: string;
  let replica: string;
  let stateDir: string;
  // The CLI's os.tmpdir(): verify must leave nothing in it.
  let cliTmp: string;
  let db: Database.Database;
  let agent: Agent | undefined;

  const cli = (args: string[]): Promise<RunResult> => runCli(args, { env: { TMPDIR: cliTmp } });
  const cliJson = <T>(args: string[]): Promise<T> => runCliJson<T>(args, { env: { TMPDIR: cliTmp } });
  const assertTmpEmpty = (): void => assert.deepEqual(readdirSync(cliTmp), [], 'verify leaves nothing in the temp dir');

  /** Wait until the replica's latest restorable state is the app's current content. */
  async function waitCaughtUp(): Promise<RestoreOutput> {
    const want = digestDatabase(db);
    let n = 0;
    return waitUntil(`replica to reach seq ${readSeq(db)}`, async () => {
      const out = join(dir, `probe-${n++}.db`);
      const r = await runCliJson<RestoreOutput>(['restore', replica, '-o', out, '--json']);
      return inspectDatabase(out).digest === want ? r : undefined;
    });
  }

  before(async () => {
    dir = await makeTempDir('pitr-status-verify-');
    dbPath = join(dir, 'app.db');
    replica = join(dir, 'replica');
    stateDir = join(dir, 'state');
    cliTmp = join(dir, 'tmp');
    mkdirSync(cliTmp);
    db = openAppDatabase(dbPath);
    agent = startAgent([dbPath, replica, '--sync-interval', '0', '--state-dir', stateDir]);
    // Commits made before the agent's first snapshot are folded into it: wait for it first.
    await waitUntil('the first generation', async () => (await runCliJson<ListOutput>(['list', replica, '--json']).catch(() => undefined))?.generations.length === 1);
    commit(db, 20);
    await waitCaughtUp();
  });

  after(async () => {
    if (agent) await agent.stop('SIGKILL');
    db?.close();
    if (dir) await removeTempDir(dir);
  });

  it('status --json describes the replica', async () => {
    const list = await runCliJson<ListOutput>(['list', replica, '--json']);
    const gen = list.generations[0];
    assert.ok(gen);
    const s = await cliJson<StatusOutput>(['status', replica, '--json']);
    assert.equal(s.replica, pathToFileURL(replica).href);
    assert.equal(s.empty, false);
    assert.equal(s.generation, gen.id);
    assert.equal(s.txid, gen.lastTxid);
    assert.equal(s.commitTimeMs, gen.lastCommitTimeMs);
    assert.equal(s.commitTime, new Date(gen.lastCommitTimeMs).toISOString());
    assert.deepEqual(
      s.windows.map((w) => [w.firstTxid, w.lastTxid]),
      [[gen.firstTxid, gen.lastTxid]],
    );
    assert.equal(s.generations, 1);
    assert.equal(s.snapshots, gen.snapshots);
    assert.equal(s.segments, gen.segments);
    assert.ok(s.segments >= 1);
    assert.equal(s.newestSnapshot?.txid, gen.firstTxid);
    assert.equal(s.bytes, gen.bytes);
    // Everything was written just now.
    assert.equal(s.bytesDayAgo, 0);
    assert.equal(s.bytesChange24h, s.bytes);
    assert.match(s.bytesChangeNote, /deletions are not counted/);
    // No heartbeat writer may exist yet; either way the replica was confirmed current recently.
    if (s.heartbeat === null) {
      assert.equal(s.confirmedBy, 'commit');
      assert.equal(s.confirmedAtMs, gen.lastCommitTimeMs);
    } else {
      assert.ok(s.confirmedBy === 'heartbeat' || s.heartbeat.txid < gen.lastTxid);
    }
    assert.ok(s.ageMs !== null && s.ageMs >= 0 && s.ageMs < 3_600_000);
    assert.equal(s.check, undefined);
  });

  it('status --max-age 1h exits 0 with OK on stderr', async () => {
    const r = await cli(['status', replica, '--max-age', '1h']);
    assert.equal(r.code, 0, describeRun(r));
    assert.match(r.stderr, /^OK: replica \S+ last confirmed current .+ ago \(max 1h\)/, describeRun(r));
    assert.match(r.stdout, /restorable\s+txid \d+\.\.\d+/);
  });

  it('restore and verify --progress report progress on stderr where it is not a terminal; without it they print none there', async () => {
    const r = await cli(['restore', replica, '-o', join(dir, 'progress.db'), '--progress']);
    assert.equal(r.code, 0, describeRun(r));
    const lines = r.stderr.trim().split('\n');
    // The last count is always shown (all bytes, all segments), then the check.
    assert.match(lines.at(-2) ?? '', /^restoring: (\S+ \S+) of \1, segments (\d+)\/\2$/, describeRun(r));
    assert.equal(lines.at(-1), 'checking the restored database (PRAGMA integrity_check)', describeRun(r));
    assert.match(r.stdout, /^restored /, describeRun(r));
    const quiet = await cli(['restore', replica, '-o', join(dir, 'quiet.db')]);
    assert.equal(quiet.code, 0, describeRun(quiet));
    assert.equal(quiet.stderr, '', describeRun(quiet));
    const v = await cli(['verify', replica, '--progress']);
    assert.equal(v.code, 0, describeRun(v));
    assert.match(v.stderr, /^checking objects (\d+)\/\1$/m, describeRun(v));
    assertTmpEmpty();
  });

  it('verify exits 0 on a healthy replica, and --db finds the same content while the agent runs idle', async () => {
    const s = await cliJson<StatusOutput>(['status', replica, '--json']);
    const v = await cliJson<VerifyOutput>(['verify', replica, '--json']);
    assert.equal(v.ok, true);
    assert.deepEqual(v.problems, []);
    assert.equal(v.integrity, 'ok');
    assert.equal(v.txid, s.txid);
    assert.equal(v.objectsChecked, s.snapshots + s.segments);
    assert.equal(v.bytesChecked, s.bytes);
    assert.equal(v.content, 'skipped');
    assertTmpEmpty();

    const live = await cliJson<VerifyOutput>(['verify', replica, '--db', dbPath, '--state-dir', stateDir, '--json']);
    assert.equal(live.ok, true, JSON.stringify(live));
    assert.equal(live.content, 'match', String(live.contentNote));
    assert.equal(live.contentTxid, s.txid);
    assertTmpEmpty();
  });

  it('after the agent stops, status --max-age 1s exits 2 with CRITICAL; verify --db still matches', async () => {
    const stopped = await (agent as Agent).stop('SIGTERM');
    agent = undefined;
    assert.equal(stopped.code, 0, stopped.stderr);
    await sleep(1500);
    const r = await cli(['status', replica, '--max-age', '1s']);
    assert.equal(r.code, 2, describeRun(r));
    assert.match(r.stderr, /^CRITICAL: replica \S+ last confirmed current \S+ ago \(max 1s\)/, describeRun(r));

    // The app's connection is still open, so its WAL is as the agent left it.
    const v = await cli(['verify', replica, '--db', dbPath, '--state-dir', stateDir]);
    assert.equal(v.code, 0, describeRun(v));
    assert.match(v.stdout, /content\s+match/, describeRun(v));
    assertTmpEmpty();
  });

  it('verify --db skips the content (a warning, exit 0) when the app committed what no agent captured', async () => {
    commit(db, 3);
    const r = await cli(['verify', replica, '--db', dbPath, '--state-dir', stateDir, '--json']);
    assert.equal(r.code, 0, describeRun(r));
    const v = JSON.parse(r.stdout) as VerifyOutput;
    assert.equal(v.content, 'skipped');
    assert.match(String(v.contentNote), /not captured/);
    assert.match(r.stderr, /^pitr: warning: .*content not compared/m);
    assertTmpEmpty();
  });

  it('a flipped byte in a segment fails verify, naming the object', async () => {
    const seg = listFilesRecursive(replica).find((k) => k.endsWith('.seg'));
    assert.ok(seg);
    const original = flipMiddleByte(join(replica, seg));
    try {
      const r = await cli(['verify', replica]);
      assert.equal(expectCliError(r, 'OBJECT_CORRUPT').message.includes(seg), true, describeRun(r));
      assertTmpEmpty();
    } finally {
      writeFileSync(join(replica, seg), original);
    }
  });

  it('a flipped byte in a snapshot fails verify, naming the object', async () => {
    const snap = listFilesRecursive(replica).find((k) => k.endsWith('.snap'));
    assert.ok(snap);
    const original = flipMiddleByte(join(replica, snap));
    try {
      const r = await cli(['verify', replica, '--json']);
      assert.equal(r.code, 1, describeRun(r));
      assert.equal(parseCliError(r.stderr)?.code, 'OBJECT_CORRUPT', describeRun(r));
      assert.ok(r.stderr.split('\n')[0]?.includes(snap), describeRun(r));
      const v = JSON.parse(r.stdout) as VerifyOutput;
      assert.equal(v.ok, false);
      assert.deepEqual(v.problems.find((p) => p.check === 'checksum')?.object, snap);
      assertTmpEmpty();
    } finally {
      writeFileSync(join(replica, snap), original);
    }
  });

  it('one run names every bad object', async () => {
    const keys = listFilesRecursive(replica);
    const bad = [keys.find((k) => k.endsWith('.snap')), keys.find((k) => k.endsWith('.seg'))] as string[];
    const originals = bad.map((k) => flipMiddleByte(join(replica, k)));
    try {
      const r = await cli(['verify', replica]);
      assert.equal(r.code, 1, describeRun(r));
      for (const k of bad) assert.match(r.stderr, new RegExp(`^pitr: error: \\S+ ${k.replaceAll('.', '\\.')} is corrupt: .* \\[OBJECT_CORRUPT\\]$`, 'm'), describeRun(r));
      assertTmpEmpty();
    } finally {
      bad.forEach((k, i) => writeFileSync(join(replica, k), originals[i] as Buffer));
    }
    // Put back, the replica verifies again.
    const again = await cli(['verify', replica]);
    assert.equal(again.code, 0, describeRun(again));
  });

  it('verify --db reports VERIFY_MISMATCH when the live content differs at the same txid', async () => {
    // A "live" database that is provably at the replica's latest txid: a restore of it, with a
    // saved position (no WAL) that describes it. Changing a row afterwards, without a new txid,
    // is exactly the kind of divergence the comparison exists to catch.
    const live = join(dir, 'twin.db');
    const restored = await runCliJson<RestoreOutput>(['restore', replica, '-o', live, '--json']);
    const twinState = join(dir, 'twin-state');
    mkdirSync(twinState);
    const writePosition = (): void => {
      const st = statSync(live);
      const info = inspectPages(live);
      writeFileSync(
        join(twinState, 'position.json'),
        JSON.stringify({ version: 1, generation: restored.generation, lastTxid: restored.txid, lastTime: restored.commitTimeMs, cursor: null, dbSizePages: info.pages, pageSize: info.pageSize, db: { dev: st.dev, ino: st.ino } }),
      );
    };
    writePosition();
    const same = await cliJson<VerifyOutput>(['verify', replica, '--db', live, '--state-dir', twinState, '--json']);
    assert.equal(same.content, 'match', String(same.contentNote));
    assert.equal(same.contentTxid, restored.txid);

    const w = new BetterSqlite3(live);
    w.prepare('UPDATE items SET qty = qty + 1 WHERE id = (SELECT min(id) FROM items)').run();
    w.close(); // the last connection: checkpoints and removes the WAL
    writePosition();
    const r = await cli(['verify', replica, '--db', live, '--state-dir', twinState, '--json']);
    assert.equal(r.code, 1, describeRun(r));
    const err = expectCliError(r, 'VERIFY_MISMATCH');
    assert.match(err.message, /table items differs/);
    assert.doesNotMatch(err.message, /table meta/);
    const v = JSON.parse(r.stdout) as VerifyOutput;
    assert.equal(v.content, 'mismatch');
    assert.equal(v.integrity, 'ok');
    assertTmpEmpty();
  });

  it('errors exit 1: a missing replica (even with --max-age), a bad URL; an empty replica is CRITICAL', async () => {
    const missing = join(dir, 'no-such-replica');
    expectCliError(await cli(['status', missing]), 'REPLICA_NOT_FOUND');
    const r = await cli(['status', missing, '--max-age', '1h']);
    assert.equal(r.code, 1, describeRun(r));
    expectCliError(await cli(['verify', missing]), 'REPLICA_NOT_FOUND');
    expectCliError(await cli(['status', 's3:bucket']), 'REPLICA_URL_INVALID');
    expectCliError(await cli(['verify', 'ftp://host/x']), 'REPLICA_URL_INVALID');

    const empty = join(dir, 'empty-replica');
    mkdirSync(empty);
    const e = await cli(['status', empty, '--max-age', '25h']);
    assert.equal(e.code, 2, describeRun(e));
    assert.match(e.stderr, /^CRITICAL: replica \S+ holds no restorable state/);
    expectCliError(await cli(['verify', empty]), 'REPLICA_EMPTY');
    assertTmpEmpty();
  });
});
