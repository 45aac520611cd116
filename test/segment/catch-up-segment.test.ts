import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { decodeSegment, encodeSegment, joinSegments, readSegmentHeader, readStoredSegment } from '../../src/segment/index.js';
import { segmentKey } from '../../src/segment/object-names.js';
import { GEN, T0, buildBody, rejectsCorrupt, sampleTxs, type TxSpec } from './fixtures.js';

const PAGE = 512;

function catchUpTx(txid: number, time: number): TxSpec {
  return { txid, time, dbSize: 12, pages: [[1, 9], [4, 9], [11, 9]] };
}

async function catchUpSegment(txid: number, time: number, from: number): Promise<Uint8Array> {
  return encodeSegment(
    { generation: GEN, pageSize: PAGE, firstTxid: txid, lastTxid: txid, firstTime: time, lastTime: time, compression: 'zstd', catchUpFrom: from },
    buildBody(PAGE, [catchUpTx(txid, time)]),
  );
}

describe('catch-up step segments', () => {
  it('carry catchUpFrom through encode and decode, under their own key', async () => {
    const bytes = await catchUpSegment(5, T0 + 100, T0);
    const key = segmentKey(GEN, 5, 5, T0 + 100, T0 + 100, true);
    const { header } = await decodeSegment(bytes, key);
    assert.equal(header.catchUpFrom, T0);
    assert.equal(readSegmentHeader(bytes).catchUpFrom, T0);
  });

  it('an ordinary segment has no catchUpFrom', async () => {
    const txs = sampleTxs(1, 3);
    const bytes = await encodeSegment(
      { generation: GEN, pageSize: PAGE, firstTxid: 1, lastTxid: 3, firstTime: txs[0]!.time, lastTime: txs[2]!.time, compression: 'zstd' },
      buildBody(PAGE, txs),
    );
    assert.equal(readSegmentHeader(bytes).catchUpFrom, undefined);
  });

  it('a key that disagrees with the header about being a catch-up is corruption', async () => {
    const bytes = await catchUpSegment(5, T0 + 100, T0);
    await rejectsCorrupt(decodeSegment(bytes, segmentKey(GEN, 5, 5, T0 + 100, T0 + 100, false)), undefined, /does not match its key/);
  });

  it('a catch-up over more than one txid, or starting after its commit time, is refused', async () => {
    const txs = sampleTxs(1, 2);
    await assert.rejects(
      encodeSegment({ generation: GEN, pageSize: PAGE, firstTxid: 1, lastTxid: 2, firstTime: txs[0]!.time, lastTime: txs[1]!.time, compression: 'zstd', catchUpFrom: T0 - 1 }, buildBody(PAGE, txs)),
      RangeError,
    );
    await assert.rejects(catchUpSegment(5, T0, T0 + 1), RangeError);
  });

  it('is never joined with its neighbours', async () => {
    const before = sampleTxs(1, 4);
    const a = await encodeSegment(
      { generation: GEN, pageSize: PAGE, firstTxid: 1, lastTxid: 4, firstTime: before[0]!.time, lastTime: before[3]!.time, compression: 'zstd' },
      buildBody(PAGE, before),
    );
    const c = await catchUpSegment(5, T0 + 1000, before[3]!.time);
    await assert.rejects(joinSegments([await readStoredSegment(a), await readStoredSegment(c)]), /catch-up/);
    // Alone it is what it was.
    assert.deepEqual(await joinSegments([await readStoredSegment(c)]), c);
  });
});
