import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { SegmentBodyBuilder } from '../../src/segment/segment-builder.js';
import { iterateTransactions } from '../../src/segment/index.js';
import { T0, bytesEqual, makePage } from './fixtures.js';

describe('SegmentBodyBuilder', () => {
  it('is empty at first', () => {
    const b = new SegmentBodyBuilder(4096);
    assert.equal(b.byteLength, 0);
    assert.equal(b.txCount, 0);
    assert.equal(b.firstTxid, undefined);
    assert.equal(b.lastTxid, undefined);
    assert.equal(b.firstTime, undefined);
    assert.equal(b.lastTime, undefined);
    assert.equal(b.finish().length, 0);
  });

  it('records layout: page = u32 pgno + page, commit = 0, size, txid, time', () => {
    const b = new SegmentBodyBuilder(512);
    const page = makePage(512, 7);
    b.page(7, page);
    b.commit(9, 2 ** 33 + 1, T0);
    const body = b.finish();
    assert.equal(body.length, 4 + 512 + 24);
    const v = new DataView(body.buffer, body.byteOffset, body.byteLength);
    assert.equal(v.getUint32(0), 7);
    assert.ok(bytesEqual(body.subarray(4, 516), page));
    assert.equal(v.getUint32(516), 0);
    assert.equal(v.getUint32(520), 9);
    assert.equal(v.getBigUint64(524), BigInt(2 ** 33 + 1));
    assert.equal(v.getBigUint64(532), BigInt(T0));
  });

  it('tracks range and counts; rollback drops only pages after the last commit', () => {
    const b = new SegmentBodyBuilder(512);
    b.page(1, makePage(512, 1));
    b.commit(1, 10, T0);
    const afterFirst = b.byteLength;
    b.page(2, makePage(512, 2));
    assert.equal(b.byteLength, afterFirst, 'pending pages are not counted as body');
    assert.equal(b.pendingByteLength, 516);
    b.rollback();
    assert.equal(b.pendingByteLength, 0);
    b.page(3, makePage(512, 3));
    b.commit(3, 11, T0 + 5);
    b.commit(3, 12, T0 + 5);
    b.page(4, makePage(512, 4));
    assert.equal(b.txCount, 3);
    assert.equal(b.firstTxid, 10);
    assert.equal(b.lastTxid, 12);
    assert.equal(b.firstTime, T0);
    assert.equal(b.lastTime, T0 + 5);
    const txs = [...iterateTransactions(b.finish(), 512)];
    assert.deepEqual(
      txs.map((t) => [t.txid, t.pages.map((p) => p.pgno)]),
      [
        [10, [1]],
        [11, [3]],
        [12, []],
      ],
    );
  });

  it('grows past its initial buffer; earlier finish() views keep their bytes', () => {
    const ps = 4096;
    const b = new SegmentBodyBuilder(ps);
    b.page(1, makePage(ps, 1));
    b.commit(1, 1, T0);
    const early = b.finish();
    const earlyCopy = Uint8Array.from(early);
    for (let tx = 2; tx <= 300; tx++) {
      for (let p = 1; p <= 3; p++) b.page(p, makePage(ps, p, tx));
      b.commit(3, tx, T0 + tx);
    }
    b.page(9, makePage(ps, 9));
    b.rollback();
    assert.ok(bytesEqual(early, earlyCopy));
    const body = b.finish();
    assert.equal(body.length, 4 + ps + 24 + 299 * (3 * (4 + ps) + 24));
    const txs = [...iterateTransactions(body, ps)];
    assert.equal(txs.length, 300);
    assert.ok(bytesEqual(txs[299]!.pages[2]!.data, makePage(ps, 3, 300)));
  });

  it('copies page data, so the caller may reuse its buffer', () => {
    const b = new SegmentBodyBuilder(512);
    const buf = makePage(512, 1);
    b.page(1, buf);
    buf.fill(0);
    b.commit(1, 1, T0);
    const [tx] = iterateTransactions(b.finish(), 512);
    assert.ok(bytesEqual(tx!.pages[0]!.data, makePage(512, 1)));
  });

  it('reset starts over without disturbing earlier views', () => {
    const b = new SegmentBodyBuilder(512);
    b.page(1, makePage(512, 1));
    b.commit(1, 1, T0);
    const first = b.finish();
    const copy = Uint8Array.from(first);
    b.reset();
    assert.equal(b.txCount, 0);
    assert.equal(b.firstTxid, undefined);
    b.page(2, makePage(512, 2));
    b.commit(2, 50, T0);
    assert.ok(bytesEqual(first, copy));
    assert.equal([...iterateTransactions(b.finish(), 512)][0]!.txid, 50);
  });

  it('refuses what would make an invalid body', () => {
    assert.throws(() => new SegmentBodyBuilder(1000), RangeError);
    assert.throws(() => new SegmentBodyBuilder(256), RangeError);
    assert.throws(() => new SegmentBodyBuilder(131072), RangeError);
    const b = new SegmentBodyBuilder(512);
    assert.throws(() => b.page(0, makePage(512, 0)), RangeError);
    assert.throws(() => b.page(2 ** 32, makePage(512, 0)), RangeError);
    assert.throws(() => b.page(1, new Uint8Array(511)), RangeError);
    assert.throws(() => b.commit(0, 1, T0), RangeError);
    assert.throws(() => b.commit(1, 0, T0), RangeError);
    assert.throws(() => b.commit(1, 1.5, T0), RangeError);
    assert.throws(() => b.commit(1, 1, -1), RangeError);
    b.commit(1, 5, T0);
    assert.throws(() => b.commit(1, 7, T0), /does not follow 5/);
    assert.throws(() => b.commit(1, 5, T0), /does not follow 5/);
    assert.throws(() => b.commit(1, 6, T0 - 1), /before/);
    assert.equal(b.txCount, 1, 'failed commits change nothing');
    b.commit(1, 6, T0);
    assert.equal(b.lastTxid, 6);
  });
});
