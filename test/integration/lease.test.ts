import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import Database from 'better-sqlite3';

import {
  expectCliError,
  makeTempDir,
  removeTempDir,
  runCli,
  runCliJson,
  startAgent,
  waitUntil,
  type ListOutput,
} from './helpers.js';
import { startS3Server, type S3TestServer } from '../storage/s3-server.js';
import { startMotoServer, type MotoServer } from '../storage/moto-server.js';

/** A WAL-mode database with one table named `table` and `rows` rows in it. */
function makeDb(path: string, table: string, rows: number): void {
  const db = new Database(path);
  db.pragma('journal_mode = WAL');
  db.exec(`CREATE TABLE ${table} (x INTEGER)`);
  for (let i = 0; i < rows; i++) db.prepare(`INSERT INTO ${table} VALUES (?)`).run(i);
  db.close();
}

function write(path: string, table: string, rows: number): void {
  const db = new Database(path);
  for (let i = 0; i < rows; i++) db.prepare(`INSERT INTO ${table} VALUES (?)`).run(1000 + i);
  db.close();
}

function tables(path: string): string[] {
  const db = new Database(path, { readonly: true });
  try {
    return (db.prepare("SELECT name FROM sqlite_schema WHERE type = 'table' ORDER BY name").all() as { name: string }[]).map((r) => r.name);
  } finally {
    db.close();
  }
}

interface Target {
  name: string;
  url(dir: string, n: number): string;
  env(): Record<string, string>;
}

const dirs: string[] = [];
let s3rver: S3TestServer;
let moto: MotoServer;
before(async () => {
  s3rver = await startS3Server({ bucket: 'pitr-lease-it' });
  moto = await startMotoServer({ bucket: 'pitr-lease-it' });
});
after(async () => {
  await s3rver?.close();
  await moto?.close();
  for (const d of dirs) await removeTempDir(d);
});

const targets: Target[] = [
  { name: 'a directory replica', url: (dir) => join(dir, 'S'), env: () => ({}) },
  { name: 's3rver', url: (_dir, n) => s3rver.url(`lease-${n}`), env: () => s3rver.env },
  { name: 'moto_server', url: (_dir, n) => moto.url(`lease-${n}`), env: () => moto.env },
];

let n = 0;
for (const t of targets) {
  describe(`one replica, two databases: ${t.name}`, () => {
    it('the second agent is refused while the first holds the lease; --takeover takes it and the first stops writing', async () => {
      const dir = await makeTempDir('pitr-lease-it-');
      dirs.push(dir);
      const S = t.url(dir, ++n);
      const env = t.env();
      const a = join(dir, 'a.db');
      const b = join(dir, 'b.db');
      makeDb(a, 'a_table', 3);
      makeDb(b, 'b_table', 3);
      const common = ['--lease-period', '2s', '--sync-interval', '0', '--log-format', 'json'];

      const agentA = startAgent([a, S, ...common, '--listen', '127.0.0.1:0', '--state-dir', join(dir, 'a-state')], { env });
      const list = (): Promise<ListOutput> => runCliJson<ListOutput>(['list', S, '--json'], { env });
      const genA = await waitUntil('agent A to ship its first generation', async () => {
        const l = await list();
        return l.generations.length === 1 ? l.generations[0]! : undefined;
      });

      // The reproduction of issue 18: a second database on the same replica.
      const refused = await runCli(['replicate', b, S, ...common, '--state-dir', join(dir, 'b-state')], { env, timeoutMs: 60_000 });
      const err = expectCliError(refused, 'REPLICA_LEASED');
      assert.match(err.message, new RegExp(`pid ${agentA.child.pid}`));
      assert.match(err.message, /until \d{4}-/);
      assert.match(refused.stderr, /--takeover/);

      const agentB = startAgent([b, S, ...common, '--takeover', '--state-dir', join(dir, 'b-state')], { env });
      await waitUntil('agent A to say it lost the lease', () => /lost the lease on a replica/.test(agentA.output().stderr), { timeoutMs: 60_000 });
      const healthUrl = /"health":"([^"]+)"/.exec(agentA.output().stderr)?.[1];
      assert.ok(healthUrl, 'agent A logged no health URL');
      const health = await fetch(healthUrl);
      assert.equal(health.status, 503);
      const body = (await health.json()) as { replicas: { leaseLost?: boolean }[] };
      assert.equal(body.replicas[0]?.leaseLost, true);
      const metrics = await (await fetch(healthUrl.replace(/\/healthz$/, '/metrics'))).text();
      assert.match(metrics, /pitr_replica_healthy\{[^}]*\} 0/);
      const genB = await waitUntil('agent B to ship its generation', async () => {
        const l = await list();
        return l.generations.find((g) => g.id !== genA.id);
      });

      // A keeps running and capturing, but nothing it captures from here reaches the replica,
      // not even at shutdown, when it uploads everything it holds.
      write(a, 'a_table', 5);
      const stoppedA = await agentA.stop();
      assert.equal(stoppedA.code, 0, stoppedA.stderr);
      assert.match(stoppedA.stderr, /still holds the lease on/);
      const after = await list();
      const aNow = after.generations.find((g) => g.id === genA.id);
      assert.equal(aNow?.lastTxid, genA.lastTxid, 'agent A wrote to the replica after it lost the lease');

      // txids never overlap between the two generations.
      assert.ok(genB.firstTxid > genA.lastTxid, `B starts at ${genB.firstTxid}, A ended at ${genA.lastTxid}`);

      const stoppedB = await agentB.stop();
      assert.equal(stoppedB.code, 0, stoppedB.stderr);
      const out = join(dir, 'out.db');
      const restored = await runCli(['restore', S, '-o', out], { env });
      assert.equal(restored.code, 0, restored.stderr);
      assert.deepEqual(tables(out), ['b_table']);

      // B released its lease on the way out: the next agent starts at once, without --takeover.
      const agentC = startAgent([b, S, ...common, '--state-dir', join(dir, 'b-state')], { env });
      await waitUntil('agent C to start replicating', () => /"replicating"/.test(agentC.output().stderr) || agentC.child.exitCode !== null);
      const stoppedC = await agentC.stop();
      assert.equal(stoppedC.code, 0, stoppedC.stderr);
    });
  });
}

describe('replica identity', () => {
  it('another database is refused even with no agent running; a database restored from the replica, with no state, continues it', async () => {
    const dir = await makeTempDir('pitr-identity-it-');
    dirs.push(dir);
    const S = join(dir, 'S');
    const a = join(dir, 'a.db');
    const b = join(dir, 'b.db');
    makeDb(a, 'a_table', 3);
    makeDb(b, 'b_table', 3);
    const common = ['--sync-interval', '0', '--log-format', 'json'];
    const list = (): Promise<ListOutput> => runCliJson<ListOutput>(['list', S, '--json']);

    const agentA = startAgent([a, S, ...common]);
    const genA = await waitUntil('agent A to ship its first generation', async () => (await list()).generations[0]);
    assert.equal((await agentA.stop()).code, 0);

    // Issue 18's reproduction, with the first agent stopped: the lease is free, the identity is not.
    const refused = await runCli(['replicate', b, S, ...common], { timeoutMs: 60_000 });
    const err = expectCliError(refused, 'REPLICA_OWNED_BY_OTHER_DB');
    assert.match(err.message, /a\.db/);
    assert.match(refused.stderr, /--takeover/);

    // A new container: the database restored from the replica, no state directory.
    const c = join(dir, 'c.db');
    const restored = await runCli(['restore', S, '-o', c]);
    assert.equal(restored.code, 0, restored.stderr);
    const agentC = startAgent([c, S, ...common]);
    const genC = await waitUntil('agent C to ship a new generation', async () => {
      if (agentC.child.exitCode !== null) throw new Error(`agent C exited: ${agentC.output().stderr}`);
      return (await list()).generations.find((g) => g.id !== genA.id);
    });
    assert.ok(genC.firstTxid > genA.lastTxid, `C starts at ${genC.firstTxid}, A ended at ${genA.lastTxid}`);
    assert.equal((await agentC.stop()).code, 0);

    // The original database, with its state directory, is still the same database.
    const agentA2 = startAgent([a, S, ...common]);
    await waitUntil('agent A to start again', () => /"replicating"/.test(agentA2.output().stderr) || agentA2.child.exitCode !== null);
    const stoppedA2 = await agentA2.stop();
    assert.equal(stoppedA2.code, 0, stoppedA2.stderr);
  });
});

describe('a replica unreachable at startup', () => {
  it('does not keep the agent from starting; it is leased and written once the store is back', async () => {
    const dir = await makeTempDir('pitr-lease-down-');
    dirs.push(dir);
    const own = await startS3Server({ bucket: 'pitr-lease-down' });
    try {
      await own.stop();
      const db = join(dir, 'a.db');
      makeDb(db, 'a_table', 3);
      const fileReplica = join(dir, 'F');
      const s3 = own.url('down');
      const agent = startAgent([db, fileReplica, s3, '--lease-period', '2s', '--sync-interval', '0', '--log-format', 'json'], {
        env: own.env,
      });
      await waitUntil('the file replica to get a generation', async () => {
        if (agent.child.exitCode !== null) throw new Error(`agent exited: ${agent.output().stderr}`);
        return (await runCliJson<ListOutput>(['list', fileReplica, '--json'])).generations[0];
      }, { timeoutMs: 120_000 });
      assert.match(agent.output().stderr, /replica unreachable at startup/);
      await own.restart();
      await waitUntil('the S3 replica to get a generation', async () => {
        if (agent.child.exitCode !== null) throw new Error(`agent exited: ${agent.output().stderr}`);
        return (await runCliJson<ListOutput>(['list', s3, '--json'], { env: own.env })).generations[0];
      }, { timeoutMs: 120_000 });
      assert.match(agent.output().stderr, /took the lease on a replica that was unreachable at startup/);
      const stopped = await agent.stop();
      assert.equal(stopped.code, 0, stopped.stderr);
    } finally {
      await own.close();
    }
  });
});
