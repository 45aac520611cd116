/**
 * Monitoring against the real agent: /metrics and /healthz while an S3 replica (a real s3rver
 * child process) goes down and comes back, the --max-lag crossing logs, and heartbeats.
 */
import assert from 'node:assert/strict';
import { existsSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import type Database from 'better-sqlite3';
import { openAppDatabase } from '../fixtures/app-schema.js';
import { startS3Server, type S3TestServer } from '../storage/s3-server.js';
import { makeTempDir, removeTempDir, startAgent, waitUntil, type Agent } from './helpers.js';

const cleanups: (() => Promise<unknown>)[] = [];
after(async () => {
  for (const c of cleanups.reverse()) await c().catch(() => {});
});

function commit(db: Database.Database, n: number): void {
  const ins = db.prepare('INSERT INTO items (name, qty, price, payload) VALUES (?, ?, ?, ?)');
  for (let i = 0; i < n; i++) {
    db.transaction(() => {
      db.prepare('UPDATE meta SET seq = seq + 1 WHERE id = 1').run();
      ins.run(`m-${i}`, i, i, Buffer.alloc(300, i));
    })();
  }
}

/** The agent logs the URL it serves on (we ask for port 0 to get a free one). */
async function monitorUrl(agent: Agent): Promise<string> {
  return waitUntil('the agent to start its monitor server', () => {
    for (const line of agent.output().stderr.split('\n')) {
      if (!line.includes('serving metrics and health')) continue;
      const health = (JSON.parse(line) as { health: string }).health;
      return health.replace(/\/healthz$/, '');
    }
    return undefined;
  });
}

async function healthz(base: string): Promise<{ status: number; body: { status: string; replicas: { url: string; lagSeconds: number; healthy: boolean }[] } }> {
  const res = await fetch(`${base}/healthz`);
  return { status: res.status, body: (await res.json()) as never };
}

function metricValue(text: string, name: string, labelPart: string): number | undefined {
  for (const line of text.split('\n')) {
    if (line.startsWith(`${name}{`) && line.includes(labelPart)) return Number(line.split(' ').pop());
  }
  return undefined;
}

describe('monitoring', () => {
  it('healthz turns 503 while S3 is down and back to 200 when it returns; metrics show the lag', async () => {
    const tmp = await makeTempDir('pitr-monitor-');
    cleanups.push(() => removeTempDir(tmp));
    const s3: S3TestServer = await startS3Server({ bucket: 'pitr-monitor' });
    cleanups.push(() => s3.close());
    const dbPath = join(tmp, 'app.db');
    const db = openAppDatabase(dbPath);
    cleanups.push(async () => db.close());
    const s3Url = s3.url('app');
    const fileReplica = join(tmp, 'replica');
    const agent = startAgent(
      [dbPath, s3Url, fileReplica, '--sync-interval', '0', '--listen', '127.0.0.1:0', '--max-lag', '2s', '--heartbeat-interval', '1s', '--state-dir', join(tmp, 'state')],
      { env: s3.env },
    );
    cleanups.push(() => agent.stop('SIGKILL'));
    const base = await monitorUrl(agent);
    // Before the generation starts, healthz is already 200 and nothing lags; commits made then end
    // up in the generation's first snapshot, not in the WAL captured since it (asserted below).
    await waitUntil('the agent to start replicating', () => agent.output().stderr.includes('"msg":"replicating"'));

    commit(db, 5);
    await waitUntil('healthz 200 with both replicas caught up', async () => {
      const h = await healthz(base);
      return h.status === 200 && h.body.replicas.every((r) => r.lagSeconds === 0) ? h : undefined;
    });
    const metrics = await (await fetch(`${base}/metrics`)).text();
    for (const name of [
      'pitr_replication_lag_seconds',
      'pitr_replica_last_txid',
      'pitr_replica_last_commit_timestamp_seconds',
      'pitr_wal_size_bytes',
      'pitr_shipped_bytes_total',
      'pitr_shipped_objects_total',
      'pitr_upload_errors_total',
      'pitr_snapshot_age_seconds',
      'pitr_wal_since_snapshot_bytes',
      'pitr_spool_bytes',
      'pitr_checkpoint_duration_seconds',
    ]) {
      assert.ok(metrics.includes(`# TYPE ${name} `), `metric ${name} is exported`);
    }
    assert.equal(metricValue(metrics, 'pitr_replication_lag_seconds', `replica="${s3Url}"`), 0);
    // Commits after the generation's snapshot (shipped by now) are what a latest restore replays on top of it.
    commit(db, 2);
    await waitUntil('pitr_wal_since_snapshot_bytes to count the commits since the snapshot', async () => {
      const m = await (await fetch(`${base}/metrics`)).text();
      return (metricValue(m, 'pitr_wal_since_snapshot_bytes', 'db=') ?? 0) > 0;
    });

    // Heartbeat: the idle, caught-up file replica gets one.
    await waitUntil('a heartbeat in the file replica', () => existsSync(join(fileReplica, 'heartbeat.json')));
    const hb = JSON.parse(readFileSync(join(fileReplica, 'heartbeat.json'), 'utf8')) as { txid: number };
    assert.ok(hb.txid > 0);

    // S3 goes down: the app keeps committing; the S3 replica falls behind the objective.
    await s3.stop();
    commit(db, 3);
    const bad = await waitUntil('healthz 503', async () => {
      const h = await healthz(base);
      return h.status === 503 ? h : undefined;
    }, { timeoutMs: 60_000 });
    const s3Row = bad.body.replicas.find((r) => r.url === s3Url);
    assert.ok(s3Row && !s3Row.healthy && s3Row.lagSeconds > 2, 'the S3 replica is named, with its lag');
    assert.ok(bad.body.replicas.find((r) => r.url !== s3Url)?.healthy, 'the file replica stays healthy');
    const lagged = await (await fetch(`${base}/metrics`)).text();
    assert.ok((metricValue(lagged, 'pitr_replication_lag_seconds', `replica="${s3Url}"`) ?? 0) > 2);

    // S3 returns: the agent catches up and healthz is 200 again.
    await s3.restart();
    await waitUntil('healthz 200 again', async () => (await healthz(base)).status === 200, { timeoutMs: 90_000 });
    const stopped = await agent.stop('SIGTERM');
    assert.equal(stopped.code, 0, stopped.stderr.slice(-2000));
    const lines = stopped.stderr.split('\n');
    if (process.env['PITR_IT_DEBUG']) process.stderr.write(stopped.stderr);
    assert.equal(lines.filter((l) => l.includes('behind the RPO objective')).length, 1, 'the crossing is logged once');
    assert.equal(lines.filter((l) => l.includes('back within the RPO objective')).length, 1, 'the recovery is logged once');
  });

  it('--verify-interval verifies on a schedule and exports the result; a flipped byte turns it to 0', async () => {
    const tmp = await makeTempDir('pitr-monitor-verify-');
    cleanups.push(() => removeTempDir(tmp));
    const dbPath = join(tmp, 'app.db');
    const db = openAppDatabase(dbPath);
    cleanups.push(async () => db.close());
    const replica = join(tmp, 'replica');
    const agent = startAgent([dbPath, replica, '--sync-interval', '0', '--listen', '127.0.0.1:0', '--verify-interval', '1s', '--state-dir', join(tmp, 'state')]);
    cleanups.push(() => agent.stop('SIGKILL'));
    const base = await monitorUrl(agent);
    // Commits made before the generation's first snapshot is taken end up in that snapshot, not in
    // a segment: commit once it is in the replica, so that there is a segment to damage below.
    const generationDir = (): string | undefined => readdirSync(join(replica, 'generations'), { withFileTypes: true }).find((e) => e.isDirectory())?.name;
    await waitUntil('the first snapshot in the replica', () => {
      const gen = existsSync(join(replica, 'generations')) ? generationDir() : undefined;
      return gen !== undefined && existsSync(join(replica, 'generations', gen, 'snapshots')) && readdirSync(join(replica, 'generations', gen, 'snapshots')).length > 0;
    });
    commit(db, 10);
    const segDir = join(replica, 'generations', generationDir() as string, 'segments');
    await waitUntil('a segment in the replica', () => existsSync(segDir) && readdirSync(segDir).some((f) => f.endsWith('.seg')));
    const verifyOk = async (): Promise<number | undefined> => metricValue(await (await fetch(`${base}/metrics`)).text(), 'pitr_verify_ok', 'replica=');
    await waitUntil('a passing scheduled verification', async () => (await verifyOk()) === 1);

    const seg = readdirSync(segDir).find((f) => f.endsWith('.seg')) as string;
    const bytes = readFileSync(join(segDir, seg));
    bytes[Math.floor(bytes.length / 2)] = (bytes[Math.floor(bytes.length / 2)] as number) ^ 0xff;
    writeFileSync(join(segDir, seg), bytes);
    await waitUntil('a failing scheduled verification', async () => (await verifyOk()) === 0);
    await waitUntil('the failure to be logged naming the object', () => agent.output().stderr.split('\n').some((l) => l.includes('verification FAILED') && l.includes(seg)));
    await agent.stop('SIGTERM');
  });
});
