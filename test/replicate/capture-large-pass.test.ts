/**
 * A capture pass with more than one spool entry's worth of WAL (32 MiB) cuts it into several
 * entries, each built in the buffer the previous one used (SegmentBodyBuilder reuse). Every page
 * image of every transaction must still come out exactly as the WAL holds it, in WAL order, with
 * contiguous txids: a buffer handed on too early, or stale bytes past a body's end, would show
 * here. Real SQLite connections in this process stand in for the app.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { decodeSegment, iterateTransactions } from '../../src/segment/index.js';
import { captureLabPerBlock } from './capture-lab.js';

describe('a capture pass larger than one spool entry', () => {
  const labs = captureLabPerBlock('capture-large');

  it('spools several entries whose pages are exactly the WAL frames, in order', async () => {
    const lab = await labs.open('CREATE TABLE t (k INTEGER PRIMARY KEY, v BLOB)');
    const { app, capture, spool, spoolDir, dbPath, startTxid } = lab;
    const walFramesBefore = walFrames(dbPath).length;

    // ~80 MiB of incompressible rows in 40 transactions: at least three entries. Some rows are
    // rewritten by later transactions, so pages repeat across entries too.
    const ins = app.prepare('INSERT OR REPLACE INTO t (k, v) VALUES (?, ?)');
    const commits = 40;
    for (let c = 0; c < commits; c++) {
      app.transaction(() => {
        for (let i = 0; i < 500; i++) ins.run(c % 3 === 2 ? i : c * 1000 + i, randomBytes(4000));
      })();
    }

    const r = await capture.pass();
    assert.equal(r.broken, undefined);
    assert.equal(r.transactions, commits);
    assert.equal(capture.state.lastTxid, startTxid + commits);

    const entries = spool.segmentsOf(capture.state.generation);
    assert.ok(entries.length >= 3, `expected at least 3 spool entries, got ${entries.length}`);
    const spooled: { pgno: number; data: Uint8Array }[] = [];
    let txid = startTxid;
    for (const e of entries) {
      const { header, body } = await decodeSegment(readFileSync(join(spoolDir, e.key)), e.key);
      assert.equal(header.firstTxid, txid + 1, `${e.key} continues the txids`);
      for (const tx of iterateTransactions(body, header.pageSize, e.key)) {
        assert.equal(tx.txid, ++txid);
        spooled.push(...tx.pages);
      }
    }
    assert.equal(txid, startTxid + commits);

    const wal = walFrames(dbPath).slice(walFramesBefore);
    assert.equal(spooled.length, wal.length, 'one page image per WAL frame');
    for (let i = 0; i < wal.length; i++) {
      const w = wal[i]!;
      const s = spooled[i]!;
      assert.equal(s.pgno, w.pgno, `frame ${walFramesBefore + i + 1}: page number`);
      assert.ok(Buffer.from(s.data).equals(w.data), `frame ${walFramesBefore + i + 1}: page ${w.pgno} bytes`);
    }
  });
});

/** Every frame of the WAL, as (pgno, page bytes). The WAL is never restarted in this test. */
function walFrames(dbPath: string): { pgno: number; data: Buffer }[] {
  const wal = readFileSync(`${dbPath}-wal`);
  const pageSize = wal.readUInt32BE(8);
  const frames: { pgno: number; data: Buffer }[] = [];
  for (let at = 32; at + 24 + pageSize <= wal.length; at += 24 + pageSize) {
    frames.push({ pgno: wal.readUInt32BE(at), data: wal.subarray(at + 24, at + 24 + pageSize) });
  }
  return frames;
}
