/**
 * Inputs that never hurt data (issue 18): durations, sizes and times that pitr would have to guess
 * are refused; permission and path problems are named as what they are; no hint suggests removing
 * a database; a restore never replaces a database some process has open; a second agent on the
 * same database or state directory is refused at once. Through the real CLI, each case asserting
 * the exit code, the error code, and that nothing at the output or in the replica changed.
 */
import assert from 'node:assert/strict';
import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { after, before, describe, it, type TestContext } from 'node:test';
import Database from 'better-sqlite3';
import { appCommit, openAppDatabase } from '../fixtures/app-schema.js';
import { startS3Server, type S3TestServer } from '../storage/s3-server.js';
import {
  describeRun,
  expectCliError,
  inspectDatabase,
  listFilesRecursive,
  makeTempDir,
  outputLeftovers,
  removeTempDir,
  runCli,
  runCliJson,
  spawnNode,
  startAgent,
  waitUntil,
  type Agent,
  type CliError,
  type DryRunOutput,
  type ListOutput,
  type RunResult,
  type SpawnedNode,
} from './helpers.js';

const WRITES = 12;
/** A command that must fail at once gets this long; an agent that waits or retries would not end. */
const AT_ONCE_MS = 30_000;

/** Every file under dir with a hash of its bytes: "nothing changed" compares two of these. */
function treeState(dir: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const f of listFilesRecursive(dir)) out[f] = createHash('sha256').update(readFileSync(join(dir, f))).digest('hex');
  return out;
}

/** The bytes of a database and its -wal and -shm (absent ones as ''), to prove a file untouched. */
function dbFilesState(path: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const s of ['', '-wal', '-shm', '-journal']) {
    const p = `${path}${s}`;
    out[s || 'db'] = existsSync(p) ? createHash('sha256').update(readFileSync(p)).digest('hex') : '';
  }
  return out;
}

/** A failed run that also ended by itself, promptly (not killed by the test's time limit). */
function expectPromptError(r: RunResult, code: string): CliError {
  assert.ok(!r.timedOut, `expected ${code} at once, but the command kept running\n${describeRun(r)}`);
  assert.equal(r.code, 1, describeRun(r));
  return expectCliError(r, code);
}

describe('inputs that never hurt data', { timeout: 10 * 60_000 }, () => {
  let tmp = '';
  let dbPath = '';
  let replicaDir = '';
  let replicaBefore: Record<string, string> = {};
  let counter = 0;
  const mounts: string[] = [];
  const children: ChildProcess[] = [];
  const agents: Agent[] = [];

  before(
    async () => {
      tmp = await makeTempDir('pitr-safe-inputs-');
      dbPath = join(tmp, 'app.db');
      replicaDir = join(tmp, 'backups', 'app');
      mkdirSync(join(tmp, 'backups'));
      const db = openAppDatabase(dbPath);
      // --state-dir elsewhere: the database's own lock (and the note naming its replica) then
      // goes to app.db-pitr, which `pitr list app.db` reads to say which replica was meant.
      const agent = startAgent([dbPath, replicaDir, '--sync-interval', '0', '--state-dir', join(tmp, 'state')]);
      agents.push(agent);
      try {
        await waitUntil('the replica to list a generation', async () => {
          const l = await runCliJson<ListOutput>(['list', replicaDir, '--json'], { timeoutMs: 30_000 });
          return l.generations.length > 0;
        });
        appCommit(db, WRITES);
      } finally {
        db.close();
      }
      const stopped = await agent.stop('SIGTERM', 120_000);
      assert.equal(stopped.code, 0, describeRun(stopped));
      replicaBefore = treeState(replicaDir);
    },
    { timeout: 5 * 60_000 },
  );

  after(async () => {
    for (const a of agents) await a.stop('SIGKILL', 10_000);
    for (const c of children) c.kill('SIGKILL');
    for (const m of mounts.reverse()) {
      try {
        execFileSync('umount', [m]);
      } catch {
        // already gone
      }
    }
    if (tmp !== '') await removeTempDir(tmp);
  });

  function fresh(name: string): string {
    const dir = join(tmp, 'cases', `${counter++}-${name}`);
    mkdirSync(dir, { recursive: true });
    return dir;
  }

  /** A directory on a read-only file system (a tmpfs mounted ro), or a skip saying why not. */
  function readOnlyDir(t: TestContext, populate?: (dir: string) => void): string | undefined {
    const dir = fresh('ro');
    try {
      execFileSync('mount', ['-t', 'tmpfs', '-o', `${populate ? 'rw' : 'ro'},size=1m`, 'tmpfs', dir], { stdio: 'pipe' });
      mounts.push(dir);
      if (populate) {
        populate(dir);
        execFileSync('mount', ['-o', 'remount,ro', dir], { stdio: 'pipe' });
      }
    } catch (err) {
      // Permission bits do not stop root, and only root may mount: without a mount there is no
      // honest read-only directory to test with.
      t.skip(`cannot mount a read-only tmpfs here (${(err as Error).message.split('\n')[0]})`);
      return undefined;
    }
    return dir;
  }

  function replicaUnchanged(): void {
    assert.deepEqual(treeState(replicaDir), replicaBefore, 'the replica changed');
  }

  // ---- durations, sizes, times ----

  it('replicate --retention 1M is BAD_DURATION (minutes or months?) and starts nothing', async () => {
    const dir = fresh('retention-M');
    const replica = join(dir, 'replica');
    const r = await runCli(['replicate', dbPath, replica, '--retention', '1M', '--state-dir', join(dir, 'state')], { timeoutMs: AT_ONCE_MS });
    const err = expectPromptError(r, 'BAD_DURATION');
    assert.match(err.message, /--retention/);
    assert.match(err.message, /minutes or months/);
    assert.match(err.hint ?? '', /1mo/);
    assert.deepEqual(readdirSync(dir), [], 'a refused replicate made files');
  });

  it('units are case-sensitive: 1H is BAD_DURATION, 64M and 64mib are BAD_SIZE, each with the right spelling in the hint', async () => {
    const cases: [string[], string, RegExp][] = [
      [['--sync-interval', '1H'], 'BAD_DURATION', /1h/],
      [['--wal-reset-size', '64M'], 'BAD_SIZE', /64MiB/],
      [['--spool-max-size', '1g'], 'BAD_SIZE', /1GiB/],
      [['--snapshot-wal-min', '64mib'], 'BAD_SIZE', /64MiB/],
    ];
    for (const [flags, code, hint] of cases) {
      const dir = fresh('units');
      const r = await runCli(['replicate', dbPath, join(dir, 'replica'), '--state-dir', join(dir, 'state'), ...flags], { timeoutMs: AT_ONCE_MS });
      const err = expectPromptError(r, code);
      assert.match(err.hint ?? '', hint, describeRun(r));
      assert.deepEqual(readdirSync(dir), []);
    }
  });

  it('status --max-age 1M is BAD_DURATION', async () => {
    expectPromptError(await runCli(['status', replicaDir, '--max-age', '1M'], { timeoutMs: AT_ONCE_MS }), 'BAD_DURATION');
    replicaUnchanged();
  });

  it('months and years are accepted where retention needs them (1mo, 1y) and keep the history', async () => {
    const dir = fresh('retention-mo');
    const db = join(dir, 'app.db');
    const replica = join(dir, 'replica');
    openAppDatabase(db).close();
    const agent = startAgent([db, replica, '--sync-interval', '0', '--retention', '1y', '--snapshot-interval', '1mo', '--retention-check-interval', '1s', '--state-dir', join(dir, 'state')]);
    agents.push(agent);
    await waitUntil('the replica to list a generation', async () => {
      if (agent.child.exitCode !== null) throw new Error(`agent exited\n${describeRun(await agent.result)}`);
      return (await runCliJson<ListOutput>(['list', replica, '--json'])).generations.length > 0;
    });
    const stopped = await agent.stop('SIGTERM');
    assert.equal(stopped.code, 0, describeRun(stopped));
    assert.equal((await runCliJson<ListOutput>(['list', replica, '--json'])).generations.length, 1);
  });

  it('restore --to 2026-02-30T00:00:00Z is BAD_TIME, not March 2, and writes nothing', async () => {
    const out = join(fresh('feb30'), 'out.db');
    const r = await runCli(['restore', replicaDir, '-o', out, '--to', '2026-02-30T00:00:00Z'], { timeoutMs: AT_ONCE_MS });
    const err = expectPromptError(r, 'BAD_TIME');
    assert.match(err.message, /February 2026 has 28 days/);
    assert.deepEqual(outputLeftovers(out), []);
    replicaUnchanged();
  });

  // ---- permissions and paths ----

  it('a state directory on a read-only file system is PERMISSION_DENIED naming it, at once', async (t) => {
    const ro = readOnlyDir(t);
    if (ro === undefined) return;
    const dir = fresh('ro-state');
    for (const stateDir of [ro, join(ro, 'state')]) {
      const r = await runCli(['replicate', dbPath, join(dir, 'replica'), '--state-dir', stateDir], { timeoutMs: AT_ONCE_MS });
      const err = expectPromptError(r, 'PERMISSION_DENIED');
      assert.ok(err.message.includes(stateDir), err.message);
      assert.match(err.message, /read-only file system/);
      assert.match(err.hint ?? '', /--state-dir/);
    }
    assert.deepEqual(readdirSync(ro), []);
    assert.deepEqual(readdirSync(dir), [], 'the replica was made although the agent could not start');
  });

  it('an existing state directory made read-only is PERMISSION_DENIED too, and its files stay as they were', async (t) => {
    const ro = readOnlyDir(t, (d) => {
      mkdirSync(join(d, 'state'));
      writeFileSync(join(d, 'state', 'position.json'), '{}');
    });
    if (ro === undefined) return;
    const before = treeState(ro);
    const r = await runCli(['replicate', dbPath, join(fresh('ro-state2'), 'replica'), '--state-dir', join(ro, 'state')], { timeoutMs: AT_ONCE_MS });
    expectPromptError(r, 'PERMISSION_DENIED');
    assert.deepEqual(treeState(ro), before);
  });

  it('--state-dir naming a file is STATE_DIR_INVALID, and the file is left alone', async () => {
    const dir = fresh('state-file');
    const file = join(dir, 'notes.txt');
    writeFileSync(file, 'mine\n');
    for (const stateDir of [file, join(file, 'sub')]) {
      const r = await runCli(['replicate', dbPath, join(dir, 'replica'), '--state-dir', stateDir], { timeoutMs: AT_ONCE_MS });
      const err = expectPromptError(r, 'STATE_DIR_INVALID');
      assert.ok(err.message.includes(file), err.message);
      assert.doesNotMatch(`${err.message} ${err.hint}`, /INTERNAL|bug in pitr/);
    }
    assert.equal(readFileSync(file, 'utf8'), 'mine\n');
    assert.deepEqual(readdirSync(dir), ['notes.txt']);
  });

  it('a read-only output directory is PERMISSION_DENIED before anything is fetched; --dry-run says so too', async (t) => {
    const ro = readOnlyDir(t);
    if (ro === undefined) return;
    const out = join(ro, 'restored.db');
    const r = await runCli(['restore', replicaDir, '-o', out], { timeoutMs: AT_ONCE_MS });
    const err = expectPromptError(r, 'PERMISSION_DENIED');
    assert.ok(err.message.includes(ro), err.message);
    assert.match(err.message, /read-only/);
    assert.match(err.hint ?? '', /-o/);
    const dry = await runCli(['restore', replicaDir, '-o', out, '--dry-run'], { timeoutMs: AT_ONCE_MS });
    expectPromptError(dry, 'PERMISSION_DENIED');
    assert.deepEqual(readdirSync(ro), []);
    replicaUnchanged();
  });

  it('an unwritable replica directory at start is PERMISSION_DENIED, not an endless retry', async (t) => {
    const ro = readOnlyDir(t);
    if (ro === undefined) return;
    const dir = fresh('ro-replica');
    const before = dbFilesState(dbPath);
    for (const replica of [ro, join(ro, 'app')]) {
      const r = await runCli(['replicate', dbPath, replica, '--state-dir', join(dir, 'state')], { timeoutMs: AT_ONCE_MS });
      const err = expectPromptError(r, 'PERMISSION_DENIED');
      assert.ok(err.message.includes(replica), err.message);
      assert.match(err.message, /replica directory/);
    }
    assert.deepEqual(readdirSync(ro), []);
    assert.deepEqual(dbFilesState(dbPath), before, 'the database changed');
  });

  // ---- no hint suggests deleting a database ----

  it('pitr list DB says it is a database, not a replica, and names the replica it probably meant', async () => {
    const before = dbFilesState(dbPath);
    for (const args of [['list', dbPath], ['status', dbPath], ['verify', dbPath]]) {
      const r = await runCli(args, { timeoutMs: AT_ONCE_MS });
      const err = expectPromptError(r, 'NOT_A_REPLICA');
      assert.match(err.message, /is a SQLite database, not a replica/);
      assert.ok((err.hint ?? '').includes(replicaDir), `hint does not name ${replicaDir}: ${err.hint}`);
      assert.doesNotMatch(r.stderr, /remove|delete|\brm\b/i, describeRun(r));
    }
    assert.deepEqual(dbFilesState(dbPath), before, 'the database changed');
  });

  it('pitr list DB points at DB-replica when that is where the database replicates by default', async () => {
    const dir = fresh('default-replica');
    const db = join(dir, 'shop.db');
    openAppDatabase(db).close();
    mkdirSync(`${db}-replica`);
    const r = await runCli(['list', db], { timeoutMs: AT_ONCE_MS });
    const err = expectPromptError(r, 'NOT_A_REPLICA');
    assert.ok((err.hint ?? '').includes(`${db}-replica`), err.hint);
  });

  it('restore from a database instead of a replica is NOT_A_REPLICA and writes nothing', async () => {
    const out = join(fresh('restore-db'), 'out.db');
    const before = dbFilesState(dbPath);
    const r = await runCli(['restore', dbPath, '-o', out], { timeoutMs: AT_ONCE_MS });
    expectPromptError(r, 'NOT_A_REPLICA');
    assert.doesNotMatch(r.stderr, /remove|delete/i);
    assert.deepEqual(outputLeftovers(out), []);
    assert.deepEqual(dbFilesState(dbPath), before);
  });

  // ---- restore --force over a database in use ----

  /** A copy of a restore of the replica at `path`, as a live database an app could have open. */
  async function liveDatabase(name: string, mode: 'wal' | 'delete'): Promise<string> {
    const path = join(fresh(name), 'live.db');
    const r = await runCli(['restore', replicaDir, '-o', path]);
    assert.equal(r.code, 0, describeRun(r));
    const db = new Database(path);
    db.pragma(`journal_mode = ${mode}`);
    db.close();
    return path;
  }

  /** A separate process with the database open (better-sqlite3, one read done), until killed. */
  async function holdOpen(path: string): Promise<SpawnedNode> {
    const script = join(tmp, 'hold-open.cjs');
    if (!existsSync(script)) {
      writeFileSync(
        script,
        "const Database = require(process.argv[2]);\n" +
          'const db = new Database(process.argv[3]);\n' +
          "db.prepare('SELECT count(*) FROM sqlite_schema').get();\n" +
          "process.stdout.write('ready\\n');\n" +
          'setInterval(() => {}, 60_000);\n',
      );
    }
    const holder = spawnNode(script, [createRequire(import.meta.url).resolve('better-sqlite3'), path], { timeoutMs: 5 * 60_000 });
    children.push(holder.child);
    await waitUntil('the holder to open the database', () => {
      if (holder.child.exitCode !== null) throw new Error(`holder exited: ${holder.output().stderr}`);
      return holder.output().stdout.includes('ready');
    });
    return holder;
  }

  it('restore --force over a WAL database another process has open is DB_IN_USE naming it, and changes nothing', async () => {
    const live = await liveDatabase('in-use-wal', 'wal');
    const holder = await holdOpen(live);
    try {
      const before = dbFilesState(live);
      assert.notEqual(before['-shm'], '', 'the open WAL database has a -shm');
      const r = await runCli(['restore', replicaDir, '-o', live, '--force'], { timeoutMs: AT_ONCE_MS });
      const err = expectPromptError(r, 'DB_IN_USE');
      assert.ok(err.message.includes(`pid ${holder.child.pid}`), err.message);
      assert.match(err.hint ?? '', /stop the app/);
      const dry = await runCli(['restore', replicaDir, '-o', live, '--force', '--dry-run'], { timeoutMs: AT_ONCE_MS });
      expectPromptError(dry, 'DB_IN_USE');
      assert.deepEqual(dbFilesState(live), before, 'the database in use changed');
      assert.deepEqual(outputLeftovers(live).sort(), ['live.db', 'live.db-shm', 'live.db-wal']);
    } finally {
      holder.child.kill('SIGKILL');
      await holder.result;
    }
    // Nobody uses it now: --force is for exactly that.
    const r = await runCli(['restore', replicaDir, '-o', live, '--force']);
    assert.equal(r.code, 0, describeRun(r));
    assert.equal(inspectDatabase(live).integrity, 'ok');
    replicaUnchanged();
  });

  it('restore --force over a database the sqlite3 shell has open (rollback journal: no lock between statements) is DB_IN_USE', async (t) => {
    const live = await liveDatabase('in-use-shell', 'delete');
    const shell = spawn('sqlite3', [live], { stdio: ['pipe', 'pipe', 'pipe'] });
    children.push(shell);
    const spawned = await new Promise<boolean>((resolve) => {
      shell.once('spawn', () => resolve(true));
      shell.once('error', () => resolve(false));
    });
    if (!spawned) {
      t.skip('no sqlite3 shell on this machine');
      return;
    }
    try {
      let out = '';
      shell.stdout.setEncoding('utf8').on('data', (s: string) => (out += s));
      shell.stdin.write("SELECT 'ready';\n");
      await waitUntil('the shell to answer', () => out.includes('ready'));
      const before = dbFilesState(live);
      const r = await runCli(['restore', replicaDir, '-o', live, '--force'], { timeoutMs: AT_ONCE_MS });
      const err = expectPromptError(r, 'DB_IN_USE');
      assert.ok(err.message.includes(`pid ${shell.pid}`), err.message);
      assert.deepEqual(dbFilesState(live), before);
      assert.deepEqual(outputLeftovers(live), ['live.db']);
    } finally {
      shell.kill('SIGKILL');
    }
  });

  it('restore --force over a database an agent is replicating is DB_IN_USE naming the agent', async () => {
    const dir = fresh('in-use-agent');
    const live = join(dir, 'live.db');
    openAppDatabase(live).close();
    const replica = join(dir, 'replica');
    const agent = startAgent([live, replica, '--sync-interval', '0', '--state-dir', join(dir, 'state')]);
    agents.push(agent);
    await waitUntil('the agent to replicate', async () => {
      if (agent.child.exitCode !== null) throw new Error(`agent exited\n${describeRun(await agent.result)}`);
      return (await runCliJson<ListOutput>(['list', replica, '--json'])).generations.length > 0;
    });
    const before = dbFilesState(live);
    const r = await runCli(['restore', replicaDir, '-o', live, '--force'], { timeoutMs: AT_ONCE_MS });
    const err = expectPromptError(r, 'DB_IN_USE');
    assert.ok(err.message.includes(`pid ${agent.child.pid}`), err.message);
    assert.match(err.hint ?? '', /pitr replicate/);
    assert.deepEqual(dbFilesState(live), before);
    const stopped = await agent.stop('SIGTERM');
    assert.equal(stopped.code, 0, describeRun(stopped));
  });

  // ---- replicate's own arguments ----

  it('replicate nodir/x.db is DB_DIR_NOT_FOUND at once, and makes no directory', async () => {
    const dir = fresh('nodir');
    const r = await runCli(['replicate', join(dir, 'nodir', 'x.db'), join(dir, 'replica')], { timeoutMs: AT_ONCE_MS });
    const err = expectPromptError(r, 'DB_DIR_NOT_FOUND');
    assert.ok(err.message.includes(join(dir, 'nodir')), err.message);
    assert.deepEqual(readdirSync(dir), []);
  });

  it('a zero-byte database is explained (waiting for the app\'s first write), then replicated once written', async () => {
    const dir = fresh('zero');
    const db = join(dir, 'new.db');
    writeFileSync(db, '');
    const replica = join(dir, 'replica');
    const agent = startAgent([db, replica, '--sync-interval', '0', '--state-dir', join(dir, 'state')]);
    agents.push(agent);
    await waitUntil('the agent to explain the empty file', () => {
      if (agent.child.exitCode !== null) throw new Error(`agent exited: ${agent.output().stderr}`);
      return agent.output().stderr.includes('the database file is empty (0 bytes)');
    });
    assert.deepEqual(readFileSync(db).length, 0, 'the agent wrote to the empty database');
    const app = openAppDatabase(db);
    try {
      appCommit(app, 2);
    } finally {
      app.close();
    }
    await waitUntil('the replica to list a generation', async () => (await runCliJson<ListOutput>(['list', replica, '--json'])).generations.length > 0);
    const stopped = await agent.stop('SIGTERM');
    assert.equal(stopped.code, 0, describeRun(stopped));
  });

  it('the database\'s own directory as a replica is BAD_REPLICA, and nothing is written there', async () => {
    const dir = fresh('own-dir');
    const db = join(dir, 'app.db');
    openAppDatabase(db).close();
    const before = readdirSync(dir).sort();
    const r = await runCli(['replicate', db, dir], { timeoutMs: AT_ONCE_MS });
    const err = expectPromptError(r, 'BAD_REPLICA');
    assert.match(err.message, /own directory/);
    assert.deepEqual(readdirSync(dir).sort(), before);
  });

  it('the database itself as a replica is BAD_REPLICA', async () => {
    const before = dbFilesState(dbPath);
    const r = await runCli(['replicate', dbPath, dbPath, '--state-dir', join(fresh('db-as-replica'), 'state')], { timeoutMs: AT_ONCE_MS });
    expectPromptError(r, 'BAD_REPLICA');
    assert.doesNotMatch(r.stderr, /remove|delete/i);
    assert.deepEqual(dbFilesState(dbPath), before);
  });

  it('the same replica given twice (even spelt differently) is BAD_REPLICA', async () => {
    const dir = fresh('twice');
    const replica = join(dir, 'replica');
    for (const second of [replica, `file://${replica}`, `${replica}/`]) {
      const r = await runCli(['replicate', dbPath, replica, second, '--state-dir', join(dir, 'state')], { timeoutMs: AT_ONCE_MS });
      const err = expectPromptError(r, 'BAD_REPLICA');
      assert.match(err.message, /twice|same place/);
    }
    assert.deepEqual(readdirSync(dir), []);
  });

  // ---- S3: no SDK banner ----

  describe('S3', () => {
    let s3: S3TestServer | undefined;
    before(async () => {
      s3 = await startS3Server({ bucket: 'safe-inputs' });
    });
    after(async () => {
      await s3?.close();
    });

    it('S3 commands print no SDK banner: stderr is pitr\'s error line and hint, nothing else', async () => {
      const server = s3 as S3TestServer;
      // As a user's shell has it: the SDK's switch for its banner not set.
      const env = { ...server.env, AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: '' };
      const out = join(fresh('s3'), 'out.db');
      const url = `${server.url('nothing-here')}&force-path-style=true`;
      const r = await runCli(['restore', url, '-o', out], { env, timeoutMs: 60_000 });
      expectPromptError(r, 'REPLICA_EMPTY');
      const lines = r.stderr.trimEnd().split('\n');
      assert.ok(lines.length <= 2, `stderr has more than the error and its hint:\n${r.stderr}`);
      assert.doesNotMatch(r.stderr, /NodeVersionSupportWarning|AWS SDK|Warning/);
      assert.deepEqual(outputLeftovers(out), []);
      const l = await runCli(['list', url, '--json'], { env, timeoutMs: 60_000 });
      assert.equal(l.code, 0, describeRun(l));
      assert.equal(l.stderr, '', `list printed on stderr:\n${l.stderr}`);
    });

    it('replicate to an S3 replica that answers "no" (a missing bucket, bad credentials) exits 1 at start instead of retrying forever', async () => {
      const server = s3 as S3TestServer;
      const db = await liveDatabase('s3-refused', 'wal');
      const missing = `${server.url('app')}&force-path-style=true`.replace('s3://safe-inputs/', 's3://no-such-bucket/');
      const r = await runCli(['replicate', db, missing, '--state-dir', join(fresh('s3-refused-state'), 'state')], { env: server.env, timeoutMs: 60_000 });
      const err = expectPromptError(r, 'STORAGE_IO');
      assert.match(err.message, /no-such-bucket|NoSuchBucket|does not exist/i);
      const badCreds = { ...server.env, AWS_ACCESS_KEY_ID: 'nobody', AWS_SECRET_ACCESS_KEY: 'wrong' };
      const url = `${server.url('app')}&force-path-style=true`;
      const r2 = await runCli(['replicate', db, url, '--state-dir', join(fresh('s3-refused-state2'), 'state')], { env: badCreds, timeoutMs: 60_000 });
      expectPromptError(r2, 'STORAGE_IO');
      assert.match(r2.stderr, /credentials/i);
    });
  });

  // ---- dry run ----

  it('restore --dry-run onto an existing OUT prints the plan and says the real run would be refused (OUTPUT_EXISTS)', async () => {
    const out = join(fresh('dry-exists'), 'restored.db');
    writeFileSync(out, 'precious\n');
    const r = await runCli(['restore', replicaDir, '-o', out, '--dry-run'], { timeoutMs: AT_ONCE_MS });
    const err = expectPromptError(r, 'OUTPUT_EXISTS');
    assert.match(err.message, /the real run would be refused/);
    assert.match(r.stdout, /^plan: /);
    const json = await runCli(['restore', replicaDir, '-o', out, '--dry-run', '--json'], { timeoutMs: AT_ONCE_MS });
    assert.equal(json.code, 1, describeRun(json));
    const plan = JSON.parse(json.stdout) as DryRunOutput & { refused?: { code: string } };
    assert.equal(plan.refused?.code, 'OUTPUT_EXISTS');
    assert.equal(readFileSync(out, 'utf8'), 'precious\n');
    assert.deepEqual(outputLeftovers(out), ['restored.db']);
    // With --force nothing is in the way: the dry run succeeds.
    const forced = await runCli(['restore', replicaDir, '-o', out, '--dry-run', '--force'], { timeoutMs: AT_ONCE_MS });
    assert.equal(forced.code, 0, describeRun(forced));
    assert.equal(readFileSync(out, 'utf8'), 'precious\n');
    replicaUnchanged();
  });

  // ---- one agent per database and state directory ----

  it('a second agent on the same database and state directory exits 1 at once, naming the first one\'s pid', async () => {
    const dir = fresh('second-agent');
    const db = join(dir, 'app.db');
    const app = openAppDatabase(db);
    const replica = join(dir, 'replica');
    const first = startAgent([db, replica, '--sync-interval', '0']);
    agents.push(first);
    try {
      await waitUntil('the first agent to replicate', async () => {
        if (first.child.exitCode !== null) throw new Error(`agent exited\n${describeRun(await first.result)}`);
        return (await runCliJson<ListOutput>(['list', replica, '--json'])).generations.length > 0;
      });
      const pid = `pid ${first.child.pid}`;
      const cases: [string, string[]][] = [
        ['same state directory (the default)', [db, join(dir, 'replica2')]],
        ['same database, another --state-dir', [db, join(dir, 'replica3'), '--state-dir', join(dir, 'other-state')]],
      ];
      for (const [what, args] of cases) {
        const r = await runCli(['replicate', ...args], { timeoutMs: AT_ONCE_MS });
        const err = expectPromptError(r, 'STATE_DIR_LOCKED');
        assert.ok(err.message.includes(pid), `${what}: ${err.message}`);
        assert.match(err.hint ?? '', new RegExp(`kill ${first.child.pid}`));
      }
      // Another database, told to use the first one's state directory.
      const other = join(dir, 'other.db');
      openAppDatabase(other).close();
      const r = await runCli(['replicate', other, join(dir, 'replica4'), '--state-dir', `${db}-pitr`], { timeoutMs: AT_ONCE_MS });
      assert.ok(expectPromptError(r, 'STATE_DIR_LOCKED').message.includes(pid));
      for (const name of ['replica2', 'replica3', 'replica4']) assert.ok(!existsSync(join(dir, name)), `the refused agent made ${name}`);

      // The first agent is unharmed: it still captures and stops cleanly.
      appCommit(app, 3);
      const want = inspectDatabase(db).digest;
      await waitUntil('the first agent to ship the new commits', async () => {
        const out = join(dir, `probe-${counter++}.db`);
        const res = await runCli(['restore', replica, '-o', out]);
        return res.code === 0 && inspectDatabase(out).digest === want;
      });
      const stopped = await first.stop('SIGTERM');
      assert.equal(stopped.code, 0, describeRun(stopped));
    } finally {
      app.close();
    }
  });

  it('the lock dies with the agent: after a SIGKILL the next agent starts', async () => {
    const dir = fresh('lock-sigkill');
    const db = join(dir, 'app.db');
    openAppDatabase(db).close();
    const replica = join(dir, 'replica');
    const first = startAgent([db, replica, '--sync-interval', '0']);
    agents.push(first);
    await waitUntil('the first agent to replicate', async () => {
      if (first.child.exitCode !== null) throw new Error(`agent exited\n${describeRun(await first.result)}`);
      return (await runCliJson<ListOutput>(['list', replica, '--json'])).generations.length > 0;
    });
    await first.stop('SIGKILL');
    const second = startAgent([db, replica, '--sync-interval', '0']);
    agents.push(second);
    await waitUntil('the second agent to continue', () => {
      if (second.child.exitCode !== null) throw new Error(`second agent exited: ${second.output().stderr}`);
      return second.output().stderr.includes('"msg":"replicating"');
    });
    const stopped = await second.stop('SIGTERM');
    assert.equal(stopped.code, 0, describeRun(stopped));
    const holder = JSON.parse(readFileSync(join(`${db}-pitr`, 'agent.json'), 'utf8')) as { pid: number };
    assert.equal(holder.pid, second.child.pid);
  });
});
