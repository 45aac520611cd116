/**
 * A later snapshot (by --snapshot-interval or --snapshot-wal-ratio) must never hold back the
 * segments, whose uploads are the RPO: with the snapshot's upload to S3 (s3rver on loopback)
 * held by a proxy for as long as the test likes, the app's new commits still reach the replica;
 * the snapshot lands once let go, and every point restores exactly.
 */
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { appCommit, openAppDatabase, readSeq } from '../fixtures/app-schema.js';
import { digestDatabase } from '../fixtures/digest.js';
import { GateProxy } from '../storage/gate-proxy.js';
import { startS3Server, type S3TestServer } from '../storage/s3-server.js';
import { inspectDatabase, makeTempDir, removeTempDir, runCliJson, startAgent, waitUntil, type ListOutput, type RestoreOutput } from './helpers.js';

const cleanups: (() => Promise<unknown>)[] = [];
after(async () => {
  for (const c of cleanups.reverse()) await c().catch(() => undefined);
});

describe('snapshot uploads', () => {
  it('segments keep shipping while a later snapshot uploads (held by a proxy); the snapshot lands after', async () => {
    const dir = await makeTempDir('pitr-snapup-');
    cleanups.push(() => removeTempDir(dir));
    const s3: S3TestServer = await startS3Server({ bucket: 'pitr-snapup' });
    cleanups.push(() => s3.close());
    const proxy = await GateProxy.start(s3.endpoint);
    cleanups.push(() => proxy.close());
    const direct = s3.url('app');
    const viaProxy = `s3://${s3.bucket}/app?endpoint=${proxy.endpoint}&region=us-east-1`;
    const dbPath = join(dir, 'app.db');
    const db = openAppDatabase(dbPath);
    cleanups.push(async () => db.close());
    const agent = startAgent([dbPath, viaProxy, '--sync-interval', '0', '--snapshot-interval', '1s', '--state-dir', join(dir, 'state')], { env: s3.env });
    cleanups.push(() => agent.stop('SIGKILL'));
    const list = (): Promise<ListOutput> => runCliJson<ListOutput>(['list', direct, '--json'], { env: s3.env });

    // The generation's first snapshot is the chain's base: it goes up in line, before any segment.
    await waitUntil('the first snapshot in S3', async () => (await list().catch(() => undefined))?.generations[0]?.snapshots === 1);
    proxy.hold((method, path) => method === 'PUT' && path.includes('/snapshots/'));
    appCommit(db, 2);
    await waitUntil('a later snapshot upload to be held by the proxy', () => proxy.heldCount > 0, { timeoutMs: 30_000 });

    // While it is held, new commits still become durable in the replica.
    appCommit(db, 5);
    const want = digestDatabase(db);
    let n = 0;
    const caught = await waitUntil(`S3 to reach seq ${readSeq(db)} while the snapshot upload is held`, async () => {
      const out = join(dir, `probe-${n++}.db`);
      const r = await runCliJson<RestoreOutput>(['restore', direct, '-o', out, '--json'], { env: s3.env });
      return inspectDatabase(out).digest === want ? r : undefined;
    });
    let l = await list();
    assert.equal(l.generations[0]?.snapshots, 1, 'the held snapshot has not landed');
    assert.equal(caught.snapshotTxid, l.generations[0]?.firstTxid, 'the restore starts from the base snapshot');

    proxy.release();
    await waitUntil('the later snapshot to land', async () => ((await list()).generations[0]?.snapshots ?? 0) >= 2);
    l = await list();
    const g = l.generations[0];
    assert.ok(g);
    assert.equal(l.generations.length, 1);
    // Every commit of the run restores exactly from S3, whichever snapshot a restore starts from.
    for (let txid = g.firstTxid; txid <= g.lastTxid; txid++) {
      const out = join(dir, `at-${txid}.db`);
      const r = await runCliJson<RestoreOutput>(['restore', direct, '-o', out, '--txid', String(txid), '--json'], { env: s3.env });
      assert.equal(r.txid, txid);
      const state = inspectDatabase(out);
      assert.equal(state.seq, txid - g.firstTxid);
      assert.equal(state.integrity, 'ok');
    }
    assert.equal((await agent.stop('SIGTERM')).code, 0, 'a clean stop ships everything, the snapshots included');
  });
});
