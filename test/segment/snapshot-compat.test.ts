import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createReadStream } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { readSnapshot } from '../../src/segment/snapshot-codec.js';
import { GEN, T0, bytesEqual } from './fixtures.js';

/*
 * Snapshots written by pitr before snapshot format version 2 (one deflate stream for the whole
 * body) must still restore. The fixtures are real objects written by that version's writeSnapshot:
 * 512-byte pages made by fixturePage below, txid 42; 2,500 pages deflated (two 1 MiB slices of the
 * old writer, joined by a sync flush) and 3 pages stored raw.
 */
const FIXTURES = fileURLToPath(new URL('../../../test/fixtures/format/', import.meta.url));

function fixturePage(pageSize: number, pgno: number): Uint8Array {
  const page = new Uint8Array(pageSize);
  new DataView(page.buffer).setUint32(0, pgno);
  for (let i = 4; i < pageSize; i++) page[i] = (pgno + (i >> 8)) & 0xff;
  return page;
}

describe('snapshot format version 1 still reads', () => {
  for (const [compression, count] of [['deflate', 2500], ['none', 3]] as const) {
    it(`${compression}: ${count} pages, each exactly as written`, async () => {
      let next = 1;
      const header = await readSnapshot(createReadStream(`${FIXTURES}snapshot-v1-${compression}.snap`), (first, pages, offset) => {
        assert.equal(first, next);
        assert.equal(offset, (first - 1) * 512);
        for (let at = 0; at < pages.length; at += 512) {
          assert.ok(bytesEqual(pages.subarray(at, at + 512), fixturePage(512, next)), `page ${next}`);
          next++;
        }
      });
      assert.equal(next, count + 1);
      assert.deepEqual(header, { version: 1, kind: 'snapshot', generation: GEN, pageSize: 512, txid: 42, commitTime: T0, dbSizePages: count, compression });
    });
  }
});
