/**
 * The replica's marker (heartbeat.json) as the shipper writes it: after uploads, naming the newest
 * durable txid and where earlier generations ended, at most once per interval while uploads go
 * on, and at once when the agent stops.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { pathToFileURL } from 'node:url';
import { FileStorage } from '../../src/storage/file/file-storage.js';
import { Spool } from '../../src/replicate/spool.js';
import { Shipper } from '../../src/replicate/shipper.js';
import { silentLogger } from '../../src/log.js';
import { readHeartbeat, writeHeartbeat } from '../../src/monitor/heartbeat.js';
import { segmentKey, snapshotKey } from '../../src/segment/object-names.js';
import { GEN, T0, buildBody, sampleTxs, type TxSpec } from '../segment/fixtures.js';

const PAGE = 512;
const OLD_GEN = '0000000000000001';
const AGENT = { host: 'test', pid: 1, version: 'test' };

function storage(dir: string): FileStorage {
  return new FileStorage(dir, pathToFileURL(dir).href);
}

function header(txs: TxSpec[]): { generation: string; pageSize: number; firstTxid: number; lastTxid: number; firstTime: number; lastTime: number } {
  const last = txs[txs.length - 1] as TxSpec;
  return { generation: GEN, pageSize: PAGE, firstTxid: (txs[0] as TxSpec).txid, lastTxid: last.txid, firstTime: (txs[0] as TxSpec).time, lastTime: last.time };
}

async function withLab(fn: (replica: FileStorage, spool: Spool, track: (s: Shipper) => Shipper) => Promise<void>): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'pitr-marker-'));
  const shippers: Shipper[] = [];
  try {
    const replica = storage(join(dir, 'replica'));
    await replica.put(snapshotKey(GEN, 1, T0), new Uint8Array(1));
    const spool = new Spool(storage(join(dir, 'spool')));
    await spool.load();
    await fn(replica, spool, (s) => (shippers.push(s), s));
  } finally {
    for (const s of shippers) s.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

describe('the shipper writes the replica marker', () => {
  it('after uploads it names the newest durable txid, and carries forward where earlier generations ended', () =>
    withLab(async (replica, spool, track) => {
      // A marker from an earlier agent run, in an earlier generation.
      await writeHeartbeat(replica, { version: 1, time: T0, generation: OLD_GEN, txid: 1, commitTime: T0, agent: AGENT });
      const shipper = track(new Shipper(replica, spool, { syncIntervalMs: 0, log: silentLogger, currentGeneration: () => GEN, requestSnapshot: () => {}, onShipped: () => {}, agent: AGENT }));
      await shipper.init();
      const txs = sampleTxs(2, 3);
      await spool.addSegment(header(txs), buildBody(PAGE, txs));
      assert.equal(await shipper.flush(Date.now() + 30_000), true);
      const m = await readHeartbeat(replica);
      assert.equal(m?.generation, GEN);
      assert.equal(m?.txid, 4);
      assert.deepEqual(m?.ends, [{ generation: OLD_GEN, txid: 1, commitTime: T0 }]);
    }));

  it('while uploads go on, at most once per interval; on stop at once', () =>
    withLab(async (replica, spool, track) => {
      const shipper = track(
        new Shipper(replica, spool, { syncIntervalMs: 0, log: silentLogger, currentGeneration: () => GEN, requestSnapshot: () => {}, onShipped: () => {}, agent: AGENT, markerIntervalMs: 3_600_000 }),
      );
      await shipper.init();
      const a = sampleTxs(2, 2);
      await spool.addSegment(header(a), buildBody(PAGE, a));
      shipper.notify();
      // The first upload after a quiet time is proven at once.
      for (let i = 0; i < 400 && (await readHeartbeat(replica))?.txid !== 3; i++) await sleep(25);
      assert.equal((await readHeartbeat(replica))?.txid, 3);
      const b = sampleTxs(4, 2, T0 + 100);
      await spool.addSegment(header(b), buildBody(PAGE, b));
      shipper.notify();
      const key = segmentKey(GEN, 4, 5, b[0]!.time, b[1]!.time);
      for (let i = 0; i < 400 && !(await replica.list('generations/')).some((o) => o.key === key); i++) await sleep(25);
      await sleep(200);
      assert.equal((await readHeartbeat(replica))?.txid, 3, 'within the interval the marker waits');
      assert.equal(await shipper.flush(Date.now() + 30_000), true);
      assert.equal((await readHeartbeat(replica))?.txid, 5, 'stopping proves the last upload');
    }));

  it('without agent details (a bare shipper) it writes none', () =>
    withLab(async (replica, spool, track) => {
      const shipper = track(new Shipper(replica, spool, { syncIntervalMs: 0, log: silentLogger, currentGeneration: () => GEN, requestSnapshot: () => {}, onShipped: () => {} }));
      await shipper.init();
      const txs = sampleTxs(2, 1);
      await spool.addSegment(header(txs), buildBody(PAGE, txs));
      assert.equal(await shipper.flush(Date.now() + 30_000), true);
      assert.equal(await readHeartbeat(replica), null);
    }));
});
