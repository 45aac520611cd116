import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { FileStorage } from '../../src/storage/file/file-storage.js';
import { Spool } from '../../src/replicate/spool.js';
import { Shipper } from '../../src/replicate/shipper.js';
import { silentLogger } from '../../src/log.js';
import { decodeSegment, encodeSegment, iterateTransactions, joinSegments, readStoredSegment } from '../../src/segment/segment-codec.js';
import { segmentKey, snapshotKey } from '../../src/segment/object-names.js';
import { GEN, T0, buildBody, sampleTxs, type TxSpec } from '../segment/fixtures.js';

const PAGE = 512;

function storage(dir: string): FileStorage {
  return new FileStorage(dir, pathToFileURL(dir).href);
}

function header(txs: TxSpec[]): { generation: string; pageSize: number; firstTxid: number; lastTxid: number; firstTime: number; lastTime: number } {
  const last = txs[txs.length - 1] as TxSpec;
  return { generation: GEN, pageSize: PAGE, firstTxid: (txs[0] as TxSpec).txid, lastTxid: last.txid, firstTime: (txs[0] as TxSpec).time, lastTime: last.time };
}

/** Every transaction in the replica's segments, in key order, with txid, time and page numbers. */
async function replicaTransactions(replica: FileStorage): Promise<{ txid: number; time: number; pgnos: number[] }[]> {
  const out = [];
  for (const o of await replica.list('generations/')) {
    if (!o.key.endsWith('.seg')) continue;
    const { header: h, body } = await decodeSegment(await replica.get(o.key), o.key);
    assert.equal(h.compression, 'zstd');
    for (const tx of iterateTransactions(body, h.pageSize)) out.push({ txid: tx.txid, time: tx.commitTime, pgnos: tx.pages.map((p) => p.pgno) });
  }
  return out;
}

describe('shipper merges spooled segments', () => {
  it('joins compressed spool entries as they are, and still ships entries an earlier pitr spooled raw or deflated', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'pitr-shipper-merge-'));
    let stop = (): void => {};
    try {
      const spoolStore = storage(join(dir, 'spool'));
      const replica = storage(join(dir, 'replica'));
      // The replica already has the generation's base, so the shipper goes straight to segments.
      await replica.put(snapshotKey(GEN, 1, T0), new Uint8Array(1));
      const txs = [sampleTxs(2, 3), sampleTxs(5, 2, T0 + 20), sampleTxs(7, 4, T0 + 30), sampleTxs(11, 1, T0 + 60), sampleTxs(12, 3, T0 + 70)];
      // Two entries as earlier pitr versions wrote them (uncompressed, then deflated to be joined),
      // then one as this one does.
      for (const [t, compression] of [[txs[0]!, 'none'], [txs[1]!, 'deflate']] as const) {
        const key = segmentKey(GEN, t[0]!.txid, t[t.length - 1]!.txid, t[0]!.time, t[t.length - 1]!.time);
        await spoolStore.put(key, await encodeSegment({ ...header(t), compression }, buildBody(PAGE, t), { joinable: true }));
      }
      const spool = new Spool(spoolStore);
      await spool.load();
      await spool.addSegment(header(txs[2]!), buildBody(PAGE, txs[2]!));
      const shipper = new Shipper(replica, spool, { syncIntervalMs: 0, log: silentLogger, currentGeneration: () => GEN, requestSnapshot: () => {}, onShipped: () => {} });
      stop = () => shipper.stop();
      await shipper.init();
      assert.equal(await shipper.flush(Date.now() + 30_000), true);

      // Then two more, both compressed by this pitr: merged by joining, nothing decompressed, so the
      // upload is exactly the join of the two spool objects.
      const parts = [];
      for (const t of txs.slice(3)) {
        const entry = await spool.addSegment(header(t), buildBody(PAGE, t));
        parts.push(await readStoredSegment(await spoolStore.get(entry.key)));
      }
      assert.equal(await shipper.flush(Date.now() + 30_000), true);
      const t3 = txs[3]!;
      const t4 = txs[4]!;
      const joinedKey = segmentKey(GEN, t3[0]!.txid, t4[t4.length - 1]!.txid, t3[0]!.time, t4[t4.length - 1]!.time);
      assert.deepEqual(await replica.get(joinedKey), Buffer.from(await joinSegments(parts)));

      const segs = (await replica.list('generations/')).filter((o) => o.key.endsWith('.seg'));
      assert.equal(segs.length, 2, `one upload per flush: ${segs.map((s) => s.key).join(', ')}`);
      const want = txs.flat().map((t) => ({ txid: t.txid, time: t.time, pgnos: t.pages.map(([pgno]) => pgno) }));
      assert.deepEqual(await replicaTransactions(replica), want);
    } finally {
      stop(); // a failed assertion must not leave its retry timer holding the process open
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
