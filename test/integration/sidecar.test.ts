/**
 * The sidecar's operations through the real CLI: --exec (the app as the agent's child: its exit
 * code, SIGTERM forwarded, everything it wrote shipped before the agent exits) and
 * --restore-if-missing (a new host restores before the app starts; a first deploy is not an error),
 * plus the control socket's `pitr snapshot`.
 */
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { createRequire } from 'node:module';
import { after, describe, it } from 'node:test';
import Database from 'better-sqlite3';
import { openAppDatabase, appCommit, readSeq } from '../fixtures/app-schema.js';
import { digestDatabase } from '../fixtures/digest.js';
import { describeRun, makeTempDir, removeTempDir, restoreLatest, runCli, runCliJson, startAgent, waitUntil, type ListOutput } from './helpers.js';

const temps: string[] = [];
after(async () => {
  for (const t of temps) await removeTempDir(t);
});

async function tempDir(): Promise<string> {
  const t = await makeTempDir('pitr-sidecar-');
  temps.push(t);
  return t;
}

/** The app the agent starts: commits `count` transactions to DB, writes its last seq to DONE, exits CODE. */
const APP = `
const Database = require(process.env.SQLITE_MODULE);
const [db, count, done, code] = process.argv.slice(2);
const c = new Database(db);
c.pragma('journal_mode = WAL');
c.pragma('busy_timeout = 5000');
c.exec('CREATE TABLE IF NOT EXISTS t (id INTEGER PRIMARY KEY, v TEXT)');
for (let i = 0; i < Number(count); i++) c.prepare('INSERT INTO t (v) VALUES (?)').run('row ' + i);
const n = c.prepare('SELECT count(*) AS n FROM t').get().n;
c.close();
require('fs').writeFileSync(done, String(n));
process.exit(Number(code));
`;

/** The app of a new host: records what it found in the database before it touched it. */
const PROBE = `
const Database = require(process.env.SQLITE_MODULE);
const fs = require('fs');
const [db, out] = process.argv.slice(2);
let seen = 'missing';
if (fs.existsSync(db)) {
  const c = new Database(db, { readonly: true });
  seen = String(c.prepare('SELECT seq FROM meta').get().seq);
  c.close();
}
fs.writeFileSync(out, seen);
process.on('SIGTERM', () => process.exit(0));
setInterval(() => {}, 1000);
`;

function env(dir: string): Record<string, string> {
  const run = join(dir, 'run');
  mkdirSync(run, { recursive: true, mode: 0o700 });
  return { XDG_RUNTIME_DIR: run, SQLITE_MODULE: require_resolve('better-sqlite3') };
}

function require_resolve(mod: string): string {
  return createRequire(import.meta.url).resolve(mod);
}

async function restoredSeq(url: string, out: string): Promise<number> {
  const db = await restoreLatest(url, out);
  try {
    return readSeq(db);
  } finally {
    db.close();
  }
}

describe('--exec', () => {
  it('ships everything the child wrote, then exits with the child\'s code', async () => {
    const dir = await tempDir();
    const db = join(dir, 'app.db');
    const replica = join(dir, 'replica');
    const app = join(dir, 'app.cjs');
    writeFileSync(app, APP);
    const done = join(dir, 'done');
    // The database exists before the agent starts (the child appends to it).
    const c = openAppDatabase(db);
    c.close();
    const agent = startAgent([db, replica, '--sync-interval', '1m', '--exec', `${process.execPath} ${app} ${db} 200 ${done} 7`], { env: env(dir) });
    const r = await agent.result;
    assert.equal(r.code, 7, `the agent exits with the child's code\n${r.stderr.slice(-3000)}`);
    assert.equal(readFileSync(done, 'utf8'), '200');
    // With a 1 minute sync interval, the child's commits still reached the replica before exit.
    const check = await restoreLatest(replica, join(dir, 'out.db'));
    const live = new Database(db, { readonly: true });
    try {
      assert.equal((check.prepare('SELECT count(*) AS n FROM t').get() as { n: number }).n, 200);
      assert.equal(digestDatabase(check), digestDatabase(live));
    } finally {
      check.close();
      live.close();
    }
  });

  it('forwards SIGTERM to the child and returns the code the child exits with', async () => {
    const dir = await tempDir();
    const db = join(dir, 'app.db');
    openAppDatabase(db).close();
    const ready = join(dir, 'ready');
    const config = join(dir, 'pitr.yml');
    writeFileSync(
      config,
      [
        'exec:',
        '  - sh',
        '  - -c',
        `  - "trap 'exit 3' TERM; touch ${ready}; while :; do sleep 0.05; done"`,
        'dbs:',
        `  - path: ${db}`,
        `    replicas: [${join(dir, 'replica')}]`,
        '',
      ].join('\n'),
    );
    const agent = startAgent(['--config', config], { env: env(dir) });
    await waitUntil('the child to start', () => existsSync(ready), { timeoutMs: 60_000 });
    const r = await agent.stop('SIGTERM');
    assert.equal(r.code, 3, `the child's code after a forwarded SIGTERM\n${r.stderr.slice(-3000)}`);
    assert.match(r.stderr, /forwarding the signal to the exec child/);
  });

  it('refuses a command that does not exist before starting anything', async () => {
    const dir = await tempDir();
    const db = join(dir, 'app.db');
    openAppDatabase(db).close();
    const r = await runCli(['replicate', db, join(dir, 'replica'), '--exec', 'no-such-command-pitr --flag'], { env: env(dir) });
    assert.notEqual(r.code, 0, describeRun(r));
    assert.match(r.stderr, /EXEC_FAILED/);
  });
});

describe('--restore-if-missing', () => {
  it('restores a missing database before the child starts, then replicates on from it', async () => {
    const dir = await tempDir();
    const oldHost = join(dir, 'old');
    mkdirSync(oldHost);
    const db = join(oldHost, 'app.db');
    const replica = join(dir, 'replica');
    const app = openAppDatabase(db);
    appCommit(app, 25);
    const first = startAgent([db, replica], { env: env(dir) });
    await waitUntil('the replica to hold seq 25', async () => (await runCliJson<ListOutput>(['list', replica, '--json'])).generations.some((g) => g.lastTxid > 0) && (await restoredSeq(replica, join(dir, `p-${Date.now()}.db`))) === 25, { timeoutMs: 60_000 });
    assert.equal((await first.stop('SIGTERM')).code, 0);
    app.close();

    // A new host: empty data directory, the same replica.
    const newHost = join(dir, 'new');
    mkdirSync(newHost);
    const db2 = join(newHost, 'app.db');
    const seen = join(dir, 'seen');
    const probe = join(dir, 'probe.cjs');
    writeFileSync(probe, PROBE);
    const agent = startAgent([db2, replica, '--restore-if-missing', '--listen', '127.0.0.1:0', '--log-format', 'json', '--exec', `${process.execPath} ${probe} ${db2} ${seen}`], { env: env(dir) });
    await waitUntil('the child to look at the database', () => existsSync(seen), { timeoutMs: 60_000 });
    assert.equal(readFileSync(seen, 'utf8'), '25', 'the child saw the restored database, exactly');
    // /healthz is up before the restore starts: a container health check must not kill a long restore.
    const log = agent.output().stderr;
    const serving = log.indexOf('serving metrics and health');
    const restored = log.indexOf('restored a missing database');
    assert.ok(serving >= 0 && restored > serving, 'the health server starts before the restore');
    // The agent replicates the restored database on: a new commit reaches the same replica.
    const c = openAppDatabase(db2);
    appCommit(c, 1);
    await waitUntil('the new commit in the replica', async () => (await restoredSeq(replica, join(dir, `q-${Date.now()}.db`))) === 26, { timeoutMs: 60_000 });
    c.close();
    const r = await agent.stop('SIGTERM');
    assert.equal(r.code, 0, r.stderr.slice(-3000));
  });

  it('a first deploy (no replica yet) is not an error: the app starts on no database', async () => {
    const dir = await tempDir();
    const db = join(dir, 'app.db');
    const seen = join(dir, 'seen');
    const probe = join(dir, 'probe.cjs');
    writeFileSync(probe, PROBE);
    const agent = startAgent([db, join(dir, 'replica'), '--restore-if-missing', '--exec', `${process.execPath} ${probe} ${db} ${seen}`], { env: env(dir) });
    await waitUntil('the child to start', () => existsSync(seen), { timeoutMs: 60_000 });
    assert.equal(readFileSync(seen, 'utf8'), 'missing');
    const r = await agent.stop('SIGTERM');
    assert.equal(r.code, 0, r.stderr.slice(-3000));
  });

  it('restores every database of a dir entry that its replica root holds', async () => {
    const dir = await tempDir();
    const tenants = join(dir, 'tenants');
    mkdirSync(tenants);
    const config = join(dir, 'pitr.yml');
    const writeConfig = (restoreIfMissing: boolean): void =>
      writeFileSync(config, [`restore-if-missing: ${restoreIfMissing}`, 'dbs:', `  - dir: ${tenants}`, '    replicas:', `      - ${join(dir, 'r')}/{name}`, ''].join('\n'));
    writeConfig(false);
    const want = new Map<string, number>();
    for (const [name, n] of [['a', 3], ['b', 5]] as const) {
      const c = openAppDatabase(join(tenants, `${name}.db`));
      appCommit(c, n);
      c.close();
      want.set(name, n);
    }
    const e = env(dir);
    const first = startAgent(['--config', config], { env: e });
    await waitUntil('both tenants replicated', async () => {
      const s = await runCli(['sync', '--json'], { env: e });
      return s.code === 0 && (JSON.parse(s.stdout) as { dbs: unknown[] }).dbs.length === 2;
    }, { timeoutMs: 60_000 });
    assert.equal((await first.stop('SIGTERM')).code, 0);
    // The host loses its disk: the tenants and their state directories are gone.
    const { rmSync } = await import('node:fs');
    rmSync(tenants, { recursive: true, force: true });
    mkdirSync(tenants);
    writeConfig(true);
    const agent = startAgent(['--config', config], { env: e });
    await waitUntil('both tenants restored', () => existsSync(join(tenants, 'a.db')) && existsSync(join(tenants, 'b.db')), { timeoutMs: 60_000 });
    const r = await agent.stop('SIGTERM');
    assert.equal(r.code, 0, r.stderr.slice(-3000));
    for (const [name, n] of want) {
      const c = new Database(join(tenants, `${name}.db`), { readonly: true });
      try {
        assert.equal(readSeq(c), n, name);
      } finally {
        c.close();
      }
    }
  });
});

describe('control socket', () => {
  it('pitr snapshot takes a snapshot now and pitr sync ships now', async () => {
    const dir = await tempDir();
    const db = join(dir, 'app.db');
    const replica = join(dir, 'replica');
    const app = openAppDatabase(db);
    appCommit(app, 2);
    const e = env(dir);
    const agent = startAgent([db, replica, '--sync-interval', '10m'], { env: e });
    try {
      await waitUntil('the agent to answer', async () => (await runCli(['agent', 'status', '--json'], { env: e })).code === 0, { timeoutMs: 60_000 });
      appCommit(app, 3);
      // A 10 minute sync interval: only `pitr sync` makes the commits reach the replica now.
      const sync = await runCli(['sync', db, '--json'], { env: e, timeoutMs: 60_000 });
      assert.equal(sync.code, 0, describeRun(sync));
      assert.equal(await restoredSeq(replica, join(dir, 'after-sync.db')), 5);
      const snap = await runCli(['snapshot', db, '--json'], { env: e, timeoutMs: 60_000 });
      assert.equal(snap.code, 0, describeRun(snap));
      const list = await runCliJson<ListOutput>(['list', replica, '--json']);
      const snapshots = list.generations.reduce((n, g) => n + g.snapshots, 0);
      assert.ok(snapshots >= 2, `a second snapshot is in the replica (${snapshots})`);
      const unknown = await runCli(['snapshot', join(dir, 'other.db')], { env: e });
      assert.notEqual(unknown.code, 0);
    } finally {
      // SIGHUP (a closed terminal, some service managers) is a clean stop too, not a kill.
      const r = await agent.stop('SIGHUP');
      assert.equal(r.code, 0, r.stderr.slice(-3000));
      assert.match(r.stderr, /stopping: capturing and uploading/);
      app.close();
    }
  });
});
