import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createReadStream } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { readFileSync } from 'node:fs';
import { readSnapshot } from '../../src/segment/index.js';
import { decodeSegment } from '../../src/segment/index.js';
import { GEN, T0, buildBody, bytesEqual, sampleTxs } from './fixtures.js';

/*
 * Objects written by earlier pitr versions must still restore. The fixtures are real objects
 * written by those versions' writers (none of them is ever rewritten): 512-byte pages throughout.
 */
const FIXTURES = fileURLToPath(new URL('../../../test/fixtures/format/', import.meta.url));

function fixturePage(pageSize: number, pgno: number): Uint8Array {
  const page = new Uint8Array(pageSize);
  new DataView(page.buffer).setUint32(0, pgno);
  for (let i = 4; i < pageSize; i++) page[i] = (pgno + (i >> 8)) & 0xff;
  return page;
}

/*
 * Snapshots, txid 42, pages made by fixturePage: version 1 (one deflate stream for the whole body;
 * 2,500 pages in two 1 MiB slices joined by a sync flush, or 3 pages stored raw) and version 2
 * (2,500 pages in two independently deflated chunks behind their lengths).
 */
describe('snapshot format versions 1 and 2 still read', () => {
  for (const [version, compression, count] of [[1, 'deflate', 2500], [1, 'none', 3], [2, 'deflate', 2500]] as const) {
    it(`version ${version}, ${compression}: ${count} pages, each exactly as written`, async () => {
      let next = 1;
      const header = await readSnapshot(createReadStream(`${FIXTURES}snapshot-v${version}-${compression}.snap`), (first, pages, offset) => {
        assert.equal(first, next);
        assert.equal(offset, (first - 1) * 512);
        for (let at = 0; at < pages.length; at += 512) {
          assert.ok(bytesEqual(pages.subarray(at, at + 512), fixturePage(512, next)), `page ${next}`);
          next++;
        }
      });
      assert.equal(next, count + 1);
      const chunks = version === 2 ? { chunkPages: 2048 } : {};
      assert.deepEqual(header, { version, kind: 'snapshot', generation: GEN, pageSize: 512, txid: 42, commitTime: T0, dbSizePages: count, compression, ...chunks });
    });
  }
});

/*
 * Segments of format version 1, txids 7..15 of sampleTxs: stored raw, deflated, and two joinable
 * deflated segments (7..11, then 12..15 from T0 + 100) merged the way the shipper merges them.
 */
describe('segment format version 1 still reads', () => {
  const whole = sampleTxs(7, 9);
  const joined = [...sampleTxs(7, 5), ...sampleTxs(12, 4, T0 + 100)];
  for (const [file, compression, txs] of [['none', 'none', whole], ['deflate', 'deflate', whole], ['deflate-joined', 'deflate', joined]] as const) {
    it(`${file}: header and body exactly as written`, async () => {
      const { header, body } = await decodeSegment(readFileSync(`${FIXTURES}segment-v1-${file}.seg`));
      const last = txs[txs.length - 1]!;
      assert.deepEqual(header, {
        version: 1,
        kind: 'segment',
        generation: GEN,
        pageSize: 512,
        firstTxid: 7,
        lastTxid: 15,
        firstTime: txs[0]!.time,
        lastTime: last.time,
        compression,
        bodyLength: body.length,
      });
      assert.ok(bytesEqual(body, buildBody(512, txs)));
    });
  }
});
