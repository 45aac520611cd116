import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { FileStorage } from '../../src/storage/file/file-storage.js';
import { Spool } from '../../src/replicate/spool.js';
import { Shipper } from '../../src/replicate/shipper.js';
import { silentLogger } from '../../src/log.js';
import { decodeSegment, encodeSegment, iterateTransactions, joinSegments, readStoredSegment } from '../../src/segment/index.js';
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

interface Lab {
  dir: string;
  spoolStore: FileStorage;
  replica: FileStorage;
  /** Register the shipper's stop: it runs even when an assertion failed (its retry timer would hold the process open). */
  onStop: (stop: () => void) => void;
}

/** A spool and a replica that already has the generation's base (so a shipper goes straight to segments), removed after `fn`. */
async function withSpoolAndReplica(fn: (lab: Lab) => Promise<void>): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'pitr-shipper-'));
  let stop = (): void => {};
  try {
    const replica = storage(join(dir, 'replica'));
    await replica.put(snapshotKey(GEN, 1, T0), new Uint8Array(1));
    await fn({ dir, spoolStore: storage(join(dir, 'spool')), replica, onStop: (s) => (stop = s) });
  } finally {
    stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

describe('shipper merges spooled segments', () => {
  it('joins compressed spool entries as they are, and still ships entries an earlier pitr spooled raw or deflated', () =>
    withSpoolAndReplica(async ({ spoolStore, replica, onStop }) => {
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
      onStop(() => shipper.stop());
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
    }));

  it('spools a huge body frame by frame, streams an entry larger than a merged upload as it is, and ships none of a corrupt one', () =>
    withSpoolAndReplica(async ({ dir, spoolStore, replica, onStop }) => {
      // Every body is spooled the way a huge transaction's is: compressed frame by frame.
      const spool = new Spool(spoolStore, { streamBodiesOver: 0 });
      await spool.load();
      let failures = 0;
      // Never read whole: that is the memory this path saves.
      let readWhole = 0;
      const readStored = spool.readStored.bind(spool);
      spool.readStored = (e) => {
        readWhole++;
        return readStored(e);
      };
      // Every entry is larger than 64 bytes: each goes up alone, streamed.
      const shipper = new Shipper(replica, spool, {
        syncIntervalMs: 0,
        maxSegmentBytes: 64,
        log: silentLogger,
        currentGeneration: () => GEN,
        requestSnapshot: () => {},
        onShipped: () => {},
        events: { uploaded: () => {}, failed: () => void failures++ },
      });
      onStop(() => shipper.stop());
      await shipper.init();
      const good = await spool.addSegment(header(sampleTxs(2, 3)), buildBody(PAGE, sampleTxs(2, 3)));
      assert.equal(await shipper.flush(Date.now() + 30_000), true);
      assert.deepEqual(await replica.get(good.key), await spoolStore.get(good.key));
      const shippedTxs = [...iterateTransactions((await decodeSegment(await replica.get(good.key), good.key)).body, PAGE)].map((tx) => tx.txid);
      assert.deepEqual(shippedTxs, [2, 3, 4]);

      const t = sampleTxs(5, 2, T0 + 20);
      const bad = await spool.addSegment(header(t), buildBody(PAGE, t));
      const path = join(dir, 'spool', ...bad.key.split('/'));
      const bytes = readFileSync(path);
      bytes[bytes.length >> 1]! ^= 0x01;
      writeFileSync(path, bytes);
      assert.equal(await shipper.flush(Date.now() + 1_500), false);
      assert.ok(failures > 0);
      assert.equal(readWhole, 0);
      assert.deepEqual((await replica.list('generations/')).map((o) => o.key).filter((k) => k === bad.key), []);
    }));
});
