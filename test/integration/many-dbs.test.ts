/**
 * One agent, many databases, through the real CLI: a config with a `dir` of 50 databases and two
 * replicas each, databases created and removed while the agent runs, the control socket's sync
 * and status, and a clean stop after which every database restores exactly from both replicas.
 * The test process plays the tenants' app (its own SQLite connections); the agent is a child.
 */
import assert from 'node:assert/strict';
import { mkdirSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import Database from 'better-sqlite3';
import { openAppDatabase, appCommit } from '../fixtures/app-schema.js';
import { digestDatabase } from '../fixtures/digest.js';
import { spawn } from 'node:child_process';
import { CLI_PATH, makeTempDir, removeTempDir, restoreLatest, runCli, startAgent, waitUntil, describeRun } from './helpers.js';

const temps: string[] = [];
after(async () => {
  for (const t of temps) await removeTempDir(t);
});

interface StatusJson {
  pid: number;
  dbs: { db: string; txid: number; generation: string; replicas: { url: string; txid: number; lagSeconds: number }[] }[];
}

/** `pitr agent status --json` of the agent found through `env` (its XDG_RUNTIME_DIR). */
async function agentStatus(env: Record<string, string>): Promise<StatusJson> {
  const r = await runCli(['agent', 'status', '--json'], { env });
  if (r.code !== 0) throw new Error(describeRun(r));
  return JSON.parse(r.stdout) as StatusJson;
}

/** Restore the latest state of `url` and return its digest. */
async function restoredDigest(url: string, out: string): Promise<string> {
  const db = await restoreLatest(url, out);
  try {
    return digestDatabase(db);
  } finally {
    db.close();
  }
}

describe('one agent, many databases (config file, dir entry)', () => {
  it('replicates a directory of 50 databases to two replicas each, picking up new ones and letting go of removed ones', async () => {
    const root = await makeTempDir('pitr-many-');
    temps.push(root);
    const tenants = join(root, 'tenants');
    mkdirSync(tenants);
    const runtime = join(root, 'run');
    mkdirSync(runtime, { mode: 0o700 });
    const env = { XDG_RUNTIME_DIR: runtime, REPLICA_ROOT: root };
    const apps = new Map<string, Database.Database>();
    const open = (name: string): void => {
      const db = openAppDatabase(join(tenants, `${name}.db`));
      appCommit(db, 3);
      apps.set(name, db);
    };
    for (let i = 0; i < 50; i++) open(`t${String(i).padStart(2, '0')}`);
    // Not databases of the entry: another extension, and a hidden file.
    writeFileSync(join(tenants, 'notes.txt'), 'not a database');
    writeFileSync(join(tenants, '.hidden.db'), '');
    const config = join(root, 'pitr.yml');
    writeFileSync(
      config,
      [
        'sync-interval: 0',
        'log-format: json',
        'dbs:',
        `  - dir: ${tenants}`,
        '    pattern: "*.db"',
        '    replicas:',
        '      - url: file://${REPLICA_ROOT}/r1/{name}',
        '      - url: ${REPLICA_ROOT}/r2/{name}',
        '        sync-interval: 1s',
        '',
      ].join('\n'),
    );
    const agent = startAgent(['--config', config], { env });
    try {
      const status = (): Promise<StatusJson> => agentStatus(env);
      const caughtUp = (s: StatusJson, names: string[]): boolean =>
        names.every((n) => {
          const d = s.dbs.find((x) => x.db === join(tenants, `${n}.db`));
          return d !== undefined && d.txid > 0 && d.replicas.length === 2 && d.replicas.every((r) => r.txid >= d.txid);
        });
      await waitUntil('all 50 databases caught up in both replicas', async () => caughtUp(await status(), [...apps.keys()]), { timeoutMs: 180_000 });
      const s1 = await status();
      assert.equal(s1.dbs.length, 50, 'exactly the 50 *.db files, no other file');

      // New tenants appear; old ones go away (file, -wal and -shm removed by their app).
      for (let i = 50; i < 55; i++) open(`t${i}`);
      const gone = ['t00', 't01', 't02'];
      for (const n of gone) {
        apps.get(n)?.close();
        apps.delete(n);
        for (const suffix of ['', '-wal', '-shm']) rmSync(join(tenants, `${n}.db${suffix}`), { force: true });
      }
      await waitUntil('the new databases replicated and the removed ones let go', async () => {
        const s = await status();
        return s.dbs.length === 52 && caughtUp(s, [...apps.keys()]) && !s.dbs.some((d) => gone.some((n) => d.db.endsWith(`/${n}.db`)));
      }, { timeoutMs: 120_000 });

      // More writes, then `pitr sync` for everything: it returns once every replica holds them.
      for (const [, db] of apps) appCommit(db, 2);
      const sync = await runCli(['sync', '--json'], { env, timeoutMs: 120_000 });
      assert.equal(sync.code, 0, describeRun(sync));

      const stopped = await agent.stop('SIGTERM');
      assert.equal(stopped.code, 0, `agent exits 0 after a clean stop\n${stopped.stderr.slice(-3000)}`);
      // Every database, from each replica, restores to exactly its content.
      let n = 0;
      for (const [name, db] of apps) {
        const want = digestDatabase(db);
        for (const r of ['r1', 'r2']) {
          assert.equal(await restoredDigest(join(root, r, name), join(root, `out-${n++}.db`)), want, `${name} from ${r}`);
        }
      }
      // Each database has its own state directory in the hidden .pitr (not picked up as a database).
      assert.match(stopped.stderr, /letting go of a database/);
    } finally {
      await agent.stop('SIGKILL');
      for (const db of apps.values()) db.close();
    }
  });

  it('a database that cannot start leaves the others running, is listed unhealthy, and a SIGKILLed agent continues every generation', async () => {
    const root = await makeTempDir('pitr-many-bad-');
    temps.push(root);
    const tenants = join(root, 'tenants');
    mkdirSync(tenants);
    const runtime = join(root, 'run');
    mkdirSync(runtime, { mode: 0o700 });
    const env = { XDG_RUNTIME_DIR: runtime };
    const apps = new Map<string, Database.Database>();
    for (const name of ['a', 'b', 'c']) {
      const db = openAppDatabase(join(tenants, `${name}.db`));
      appCommit(db, 2);
      apps.set(name, db);
    }
    // Almost a database: the right name, not SQLite.
    writeFileSync(join(tenants, 'broken.db'), Buffer.alloc(8192, 7));
    const config = join(root, 'pitr.yml');
    writeFileSync(config, ['listen: 127.0.0.1:0', 'log-format: json', 'dbs:', `  - dir: ${tenants}`, '    replicas:', `      - ${join(root, 'r')}/{name}`, ''].join('\n'));
    const status = (): Promise<StatusJson> => agentStatus(env);
    const generations = async (): Promise<Map<string, string>> => {
      const s = await status();
      return new Map(s.dbs.filter((d) => d.generation !== '').map((d) => [d.db, d.generation]));
    };
    let agent = startAgent(['--config', config], { env });
    try {
      const base = await waitUntil('the monitor server', () => {
        for (const line of agent.output().stderr.split('\n')) {
          if (line.includes('serving metrics and health')) return (JSON.parse(line) as { health: string }).health.replace(/\/healthz$/, '');
        }
        return undefined;
      });
      await waitUntil('the three databases replicating', async () => (await generations()).size === 3);
      const health = (await (await fetch(`${base}/healthz`)).json()) as { status: string; databases: number; unhealthy: { db: string; error?: string }[] };
      assert.equal(health.status, 'lagging');
      assert.equal(health.databases, 4);
      assert.deepEqual(health.unhealthy.map((u) => u.db), [join(tenants, 'broken.db')], 'only the broken file is unhealthy');
      assert.match(health.unhealthy[0]?.error ?? '', /\[DB_/);
      const metrics = await (await fetch(`${base}/metrics`)).text();
      for (const name of ['a', 'b', 'c']) assert.match(metrics, new RegExp(`pitr_captured_txid\\{db="${join(tenants, `${name}.db`).replace(/[/.]/g, '\\$&')}"\\}`));
      // The others replicate on: a commit reaches its replica.
      appCommit(apps.get('a') as Database.Database, 1);
      const sync = await runCli(['sync', join(tenants, 'a.db')], { env });
      assert.equal(sync.code, 0, describeRun(sync));

      // SIGKILL, then a new agent: every database continues its generation.
      const before = await generations();
      await agent.stop('SIGKILL');
      for (const [, db] of apps) appCommit(db, 1);
      agent = startAgent(['--config', config], { env });
      await waitUntil('the three databases replicating again', async () => (await generations()).size === 3);
      assert.deepEqual(await generations(), before, 'each database continues its generation after a SIGKILL');
      // `pitr sync` of everything says the broken file is not replicating (exit 1); each good one syncs.
      const all = await runCli(['sync', '--json'], { env });
      assert.equal(all.code, 1, describeRun(all));
      assert.match(all.stderr, /broken\.db is not replicating/);
      for (const name of apps.keys()) {
        const one = await runCli(['sync', join(tenants, `${name}.db`)], { env });
        assert.equal(one.code, 0, describeRun(one));
      }
      const stopped = await agent.stop('SIGTERM');
      // The broken file never replicated: the agent says so with its exit code.
      assert.equal(stopped.code, 1, stopped.stderr.slice(-2000));
      let n = 0;
      for (const [name, db] of apps) {
        assert.equal(await restoredDigest(join(root, 'r', name), join(root, `out-${n++}.db`)), digestDatabase(db), name);
      }
    } finally {
      await agent.stop('SIGKILL');
      for (const db of apps.values()) db.close();
    }
  });

  it('refuses a config with an unknown key or an unset variable before starting anything', async () => {
    const root = await makeTempDir('pitr-many-conf-');
    temps.push(root);
    const config = join(root, 'pitr.yml');
    writeFileSync(config, ['dbs:', `  - path: ${join(root, 'app.db')}`, '    replicas:', `      - url: ${join(root, 'r')}`, '        sync-intervall: 1s', ''].join('\n'));
    const r = await runCli(['replicate', '--config', config]);
    assert.equal(r.code, 1, describeRun(r));
    assert.match(r.stderr, /sync-intervall/);
    assert.match(r.stderr, /pitr\.yml:5:/);
    assert.match(r.stderr, /CONFIG_INVALID/);
    writeFileSync(config, ['dbs:', `  - path: ${join(root, 'app.db')}`, '    replicas:', '      - ${PITR_TEST_UNSET_REPLICA}', ''].join('\n'));
    const unset = await runCli(['replicate', '--config', config]);
    assert.equal(unset.code, 1, describeRun(unset));
    assert.match(unset.stderr, /PITR_TEST_UNSET_REPLICA/);
    // Nothing was created next to the database.
    assert.deepEqual(readdirSync(root).sort(), ['pitr.yml']);
  });

  it('under a low open-files limit, admits the databases that fit and refuses the rest by name (TOO_MANY_OPEN_FILES)', async () => {
    const root = await makeTempDir('pitr-many-fds-');
    temps.push(root);
    const tenants = join(root, 'tenants');
    mkdirSync(tenants);
    const runtime = join(root, 'run');
    mkdirSync(runtime, { mode: 0o700 });
    for (let i = 0; i < 40; i++) {
      const db = openAppDatabase(join(tenants, `d${i}.db`));
      appCommit(db, 1);
      db.close();
    }
    const config = join(root, 'pitr.yml');
    writeFileSync(config, ['log-format: json', 'dbs:', `  - dir: ${tenants}`, '    replicas:', `      - ${join(root, 'r')}/{name}`, ''].join('\n'));
    // The real limit, set the way an operator's shell or unit would.
    const child = spawn('sh', ['-c', 'ulimit -n 500 && exec "$0" "$@"', process.execPath, CLI_PATH, 'replicate', '--config', config], {
      env: { ...process.env, XDG_RUNTIME_DIR: runtime, NODE_TEST_CONTEXT: '' },
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    let stderr = '';
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    const exited = new Promise<number | null>((resolve) => child.once('close', (code) => resolve(code)));
    try {
      const status = await waitUntil('the agent to settle: every database either replicating or refused', async () => {
        const r = await runCli(['agent', 'status', '--json'], { env: { XDG_RUNTIME_DIR: runtime } });
        if (r.code !== 0) return undefined;
        const s = JSON.parse(r.stdout) as { dbs: { db: string; txid: number; error?: string }[] };
        return s.dbs.length === 40 && s.dbs.every((d) => d.txid > 0 || d.error !== undefined) ? s : undefined;
      }, { timeoutMs: 120_000 });
      const refused = status.dbs.filter((d) => d.error !== undefined);
      assert.ok(refused.length > 0 && refused.length < 40, `some databases fit, some do not (${refused.length} refused)`);
      for (const d of refused) assert.match(d.error ?? '', /TOO_MANY_OPEN_FILES/);
      assert.doesNotMatch(stderr, /EMFILE/, 'no database ran into the limit itself');
      for (const d of status.dbs.filter((x) => x.error === undefined).slice(0, 3)) {
        const one = await runCli(['sync', d.db], { env: { XDG_RUNTIME_DIR: runtime } });
        assert.equal(one.code, 0, describeRun(one));
      }
    } finally {
      child.kill('SIGTERM');
      await exited;
    }
  });

  it('survives a tenant created and removed 15 times over while others write: no descriptor leaks, no stray databases, every survivor exact', async () => {
    const root = await makeTempDir('pitr-many-churn-');
    temps.push(root);
    const tenants = join(root, 'tenants');
    mkdirSync(tenants);
    const runtime = join(root, 'run');
    mkdirSync(runtime, { mode: 0o700 });
    const env = { XDG_RUNTIME_DIR: runtime };
    const steady = openAppDatabase(join(tenants, 'steady.db'));
    appCommit(steady, 1);
    const config = join(root, 'pitr.yml');
    writeFileSync(config, ['log-format: json', 'sync-interval: 0', 'dbs:', `  - dir: ${tenants}`, '    replicas:', `      - ${join(root, 'r')}/{name}`, ''].join('\n'));
    const agent = startAgent(['--config', config], { env });
    const fds = (): number => readdirSync(`/proc/${agent.child.pid}/fd`).length;
    const status = (): Promise<StatusJson> => agentStatus(env);
    try {
      await waitUntil('steady.db replicating', async () => (await status()).dbs.some((d) => d.txid > 0));
      const baseline = fds();
      const churn = join(tenants, 'churn.db');
      for (let round = 0; round < 15; round++) {
        const c = openAppDatabase(churn);
        appCommit(c, 1 + (round % 3));
        appCommit(steady, 1);
        // Sometimes gone before the agent saw it, sometimes after it started replicating it.
        if (round % 2 === 1) await waitUntil(`churn.db picked up (round ${round})`, async () => (await status()).dbs.some((d) => d.db === churn && d.txid > 0));
        c.close();
        for (const suffix of ['', '-wal', '-shm']) rmSync(`${churn}${suffix}`, { force: true });
      }
      // Gone and back while the agent lets go of it: replicated again, not forgotten.
      const back = openAppDatabase(churn);
      appCommit(back, 2);
      await waitUntil('churn.db picked up', async () => (await status()).dbs.some((d) => d.db === churn && d.txid > 0));
      back.close();
      for (const suffix of ['', '-wal', '-shm']) rmSync(`${churn}${suffix}`, { force: true });
      const again = openAppDatabase(churn);
      appCommit(again, 3);
      let probe = 0;
      await waitUntil('churn.db replicated again, exactly, after it came back', async () => {
        const one = await runCli(['sync', churn], { env });
        return one.code === 0 && (await restoredDigest(join(root, 'r', 'churn'), join(root, `churn-out-${probe++}.db`))) === digestDatabase(again);
      }, { timeoutMs: 60_000 });
      again.close();
      for (const suffix of ['', '-wal', '-shm']) rmSync(`${churn}${suffix}`, { force: true });
      await waitUntil('churn.db let go', async () => {
        const s = await status();
        return s.dbs.length === 1 && s.dbs[0]?.db === join(tenants, 'steady.db') ? s : undefined;
      }, { timeoutMs: 60_000 });
      // Descriptors come back to where they were (a little slack for sockets to the control client).
      await waitUntil(`the agent's descriptors back near ${baseline}`, () => fds() <= baseline + 4, { timeoutMs: 30_000 });
      const sync = await runCli(['sync', join(tenants, 'steady.db')], { env });
      assert.equal(sync.code, 0, describeRun(sync));
      const r = await agent.stop('SIGTERM');
      assert.equal(r.code, 0, r.stderr.slice(-3000));
      assert.doesNotMatch(r.stderr, /"level":"error"/, 'no error logged through the churn');
      assert.equal(await restoredDigest(join(root, 'r', 'steady'), join(root, 'steady-out.db')), digestDatabase(steady));
    } finally {
      await agent.stop('SIGKILL');
      steady.close();
    }
  });
});
