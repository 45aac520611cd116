import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import {
  WAL_FORMAT_VERSION,
  WAL_FRAME_HEADER_SIZE,
  WAL_HEADER_SIZE,
  decodeWalPageSize,
  encodeWal,
  encodeWalFrame,
  encodeWalHeader,
  frameOffset,
  parseWalFrameHeader,
  parseWalHeader,
  walChecksum,
} from '../../src/wal/wal-format.js';
import { openLab } from './wal-lab.js';

/** Straightforward reference of SQLite's walChecksumBytes, independent of the optimized code. */
function refChecksum(bigEndian: boolean, buf: Uint8Array, offset: number, length: number, s0: number, s1: number): [number, number] {
  const dv = new DataView(buf.buffer, buf.byteOffset + offset, length);
  for (let i = 0; i < length; i += 8) {
    s0 = (s0 + dv.getUint32(i, !bigEndian) + s1) >>> 0;
    s1 = (s1 + dv.getUint32(i + 4, !bigEndian) + s0) >>> 0;
  }
  return [s0, s1];
}

test('parseWalHeader reads a WAL written by real SQLite and re-encodes it byte for byte', (t) => {
  const lab = openLab(t);
  lab.insertTx(3, 100);
  const bytes = new Uint8Array(readFileSync(lab.copyWal('w')));
  const h = parseWalHeader(bytes);
  assert.ok(h);
  assert.equal(h.formatVersion, WAL_FORMAT_VERSION);
  assert.equal(h.pageSize, 4096);
  // SQLite writes checksums in the machine's byte order.
  assert.equal(h.bigEndian, new Uint8Array(new Uint32Array([1]).buffer)[0] !== 1);
  const { checksum1: _c1, checksum2: _c2, ...rest } = h;
  assert.deepEqual(encodeWalHeader(rest), bytes.subarray(0, WAL_HEADER_SIZE));
});

test('parseWalHeader rejects garbage, short input, a flipped bit, a wrong version and bad page sizes', () => {
  assert.equal(parseWalHeader(new Uint8Array(0)), null);
  assert.equal(parseWalHeader(new Uint8Array(31)), null);
  for (let i = 0; i < 50; i++) assert.equal(parseWalHeader(randomBytes(32)), null);
  const good = encodeWalHeader({ bigEndian: false, formatVersion: WAL_FORMAT_VERSION, pageSize: 4096, checkpointSeq: 7, salt1: 1, salt2: 2 });
  assert.ok(parseWalHeader(good));
  for (let byte = 0; byte < WAL_HEADER_SIZE; byte++) {
    const bad = good.slice();
    bad[byte] = bad[byte]! ^ 0x10;
    assert.equal(parseWalHeader(bad), null, `bit flip in header byte ${byte} went unnoticed`);
  }
  assert.equal(parseWalHeader(encodeWalHeader({ bigEndian: false, formatVersion: 3007001, pageSize: 4096, checkpointSeq: 0, salt1: 1, salt2: 2 })), null);
  assert.throws(() => encodeWalHeader({ bigEndian: false, formatVersion: WAL_FORMAT_VERSION, pageSize: 1000, checkpointSeq: 0, salt1: 1, salt2: 2 }), RangeError);
  for (const field of [0, 256, 1000, 131072, 4097]) assert.equal(decodeWalPageSize(field), 0, `page size field ${field}`);
  assert.equal(decodeWalPageSize(1), 65536);
  assert.equal(decodeWalPageSize(65536), 65536);
  assert.equal(decodeWalPageSize(512), 512);
});

test('header round trip in both byte orders, including page size 65536 and its 1 encoding', () => {
  for (const bigEndian of [false, true]) {
    for (const pageSize of [512, 4096, 65536]) {
      const h = { bigEndian, formatVersion: WAL_FORMAT_VERSION, pageSize, checkpointSeq: 3, salt1: 0xdeadbeef, salt2: 0x01020304 };
      const p = parseWalHeader(encodeWalHeader(h));
      assert.ok(p);
      assert.deepEqual({ ...p, checksum1: 0, checksum2: 0 }, { ...h, checksum1: 0, checksum2: 0 });
    }
  }
  const one = encodeWalHeader({ bigEndian: false, formatVersion: WAL_FORMAT_VERSION, pageSize: 1, checkpointSeq: 0, salt1: 5, salt2: 6 });
  assert.equal(parseWalHeader(one)?.pageSize, 65536);
});

test('walChecksum matches hand-worked values and wraps at 2^32', () => {
  const out = new Uint32Array(2);
  const b = new Uint8Array([1, 0, 0, 0, 2, 0, 0, 0]);
  walChecksum(false, b, 0, 8, 0, 0, out);
  assert.deepEqual([...out], [1, 3]);
  walChecksum(true, b, 0, 8, 0, 0, out);
  assert.deepEqual([...out], [0x01000000, 0x03000000]);
  walChecksum(false, new Uint8Array([1, 0, 0, 0, 1, 0, 0, 0]), 0, 8, 0xffffffff, 1, out);
  assert.deepEqual([...out], [1, 3]);
  assert.throws(() => walChecksum(false, b, 0, 7, 0, 0, out), RangeError);
  assert.throws(() => walChecksum(false, b, 4, 8, 0, 0, out), RangeError);
});

test('walChecksum agrees with a reference at every alignment, both byte orders', () => {
  const out = new Uint32Array(2);
  const data = randomBytes(4096 + 64);
  for (const bigEndian of [false, true]) {
    for (let off = 0; off < 16; off++) {
      for (const len of [0, 8, 24, 4096]) {
        const s0 = (off * 2654435761) >>> 0;
        const s1 = (len * 40503) >>> 0;
        walChecksum(bigEndian, data, off, len, s0, s1, out);
        assert.deepEqual([...out], refChecksum(bigEndian, data, off, len, s0, s1), `be=${bigEndian} off=${off} len=${len}`);
      }
    }
    // A subarray with an odd byteOffset exercises the unaligned path through the public API.
    const sub = data.subarray(3);
    walChecksum(bigEndian, sub, 5, 64, 9, 9, out);
    assert.deepEqual([...out], refChecksum(bigEndian, sub, 5, 64, 9, 9));
  }
});

test('frameOffset places frames after the 32-byte header at 24+pageSize strides', () => {
  assert.equal(frameOffset(1, 4096), 32);
  assert.equal(frameOffset(2, 4096), 32 + 4120);
  assert.equal(frameOffset(10, 512), 32 + 9 * 536);
  assert.equal(frameOffset(3, 65536), 32 + 2 * 65560);
});

test('encodeWalFrame chains checksums the way SQLite does (re-encoding a real WAL is byte-identical)', (t) => {
  const lab = openLab(t);
  lab.insertTx(5, 3000);
  lab.insertTx(1, 10);
  const bytes = new Uint8Array(readFileSync(lab.copyWal('w')));
  const h = parseWalHeader(bytes)!;
  const chain = new Uint32Array([h.checksum1, h.checksum2]);
  const fsz = WAL_FRAME_HEADER_SIZE + h.pageSize;
  let frames = 0;
  for (let o = WAL_HEADER_SIZE; o + fsz <= bytes.length; o += fsz, frames++) {
    const f = parseWalFrameHeader(bytes, o);
    const enc = encodeWalFrame(h, chain, f.pgno, f.dbSizePages, bytes.subarray(o + WAL_FRAME_HEADER_SIZE, o + fsz));
    assert.deepEqual(enc, bytes.subarray(o, o + fsz), `frame ${frames + 1}`);
  }
  assert.ok(frames > 3);
});

test('encodeWal lays out header and frames contiguously', () => {
  const pageSize = 512;
  const page = (b: number): Uint8Array => new Uint8Array(pageSize).fill(b);
  const wal = encodeWal({ bigEndian: true, formatVersion: WAL_FORMAT_VERSION, pageSize, checkpointSeq: 0, salt1: 1, salt2: 2 }, [
    { pgno: 1, dbSizePages: 0, page: page(1) },
    { pgno: 2, dbSizePages: 2, page: page(2) },
  ]);
  assert.equal(wal.length, frameOffset(3, pageSize));
  assert.equal(parseWalFrameHeader(wal, frameOffset(2, pageSize)).dbSizePages, 2);
  assert.equal(wal[frameOffset(2, pageSize) + WAL_FRAME_HEADER_SIZE], 2);
});
