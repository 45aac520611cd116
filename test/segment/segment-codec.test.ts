import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { deflateRawSync } from 'node:zlib';
import zstdBinding from 'zstd-napi/binding.js';
import { zstdFrame } from '../fixtures/zstd-frame.js';
import { pack } from 'msgpackr';
import { PitrError } from '../../src/errors.js';
import {
  canJoin,
  decodeSegment,
  encodeSegment,
  encodeSegmentChunks,
  iterateTransactions,
  joinSegments,
  readSegmentHeader,
  readStoredSegment,
  verifiedStoredChunks,
  type SegmentHeaderInput,
} from '../../src/segment/index.js';
import type { Compression, TxRecord } from '../../src/segment/segment-types.js';
import { segmentKey, snapshotKey } from '../../src/segment/object-names.js';
import {
  GEN,
  T0,
  assertCorrupt,
  buildBody,
  bytesEqual,
  frame,
  makePage,
  rawBody,
  rejectsCorrupt,
  reseal,
  sampleTxs,
  throwsCorrupt,
  type TxSpec,
} from './fixtures.js';

const NAME = 'generations/0123456789abcdef/segments/x.seg';

function headerFor(pageSize: number, txs: TxSpec[], compression: Compression): SegmentHeaderInput {
  return {
    generation: GEN,
    pageSize,
    firstTxid: txs[0]!.txid,
    lastTxid: txs[txs.length - 1]!.txid,
    firstTime: txs[0]!.time,
    lastTime: txs[txs.length - 1]!.time,
    compression,
  };
}

async function segmentOf(pageSize: number, txs: TxSpec[], compression: Compression): Promise<Uint8Array> {
  return encodeSegment(headerFor(pageSize, txs, compression), buildBody(pageSize, txs));
}

function assertTxsMatch(got: TxRecord[], want: TxSpec[], pageSize: number): void {
  assert.equal(got.length, want.length);
  for (let i = 0; i < want.length; i++) {
    const g = got[i]!;
    const w = want[i]!;
    assert.equal(g.txid, w.txid);
    assert.equal(g.commitTime, w.time);
    assert.equal(g.dbSizePages, w.dbSize);
    assert.deepEqual(
      g.pages.map((p) => p.pgno),
      w.pages.map(([pgno]) => pgno),
    );
    for (let j = 0; j < w.pages.length; j++) {
      const [pgno, seed] = w.pages[j]!;
      assert.ok(bytesEqual(g.pages[j]!.data, makePage(pageSize, pgno, seed)), `tx ${w.txid} page ${j} content`);
    }
  }
}

describe('segment round trip', () => {
  for (const compression of ['none', 'deflate', 'zstd'] as const) {
    for (const pageSize of [512, 4096, 65536]) {
      it(`${compression}, page size ${pageSize}`, async () => {
        const txs = sampleTxs(41, 9);
        const bytes = await segmentOf(pageSize, txs, compression);
        const { header, body } = await decodeSegment(bytes, NAME);
        assert.deepEqual(header, {
          version: 2,
          kind: 'segment',
          ...headerFor(pageSize, txs, compression),
          bodyLength: buildBody(pageSize, txs).length,
        });
        assert.deepEqual(readSegmentHeader(bytes, NAME), header);
        assertTxsMatch([...iterateTransactions(body, pageSize)], txs, pageSize);
      });
    }
  }

  it('keeps a transaction with no pages and a pgno written twice, in order', async () => {
    const txs: TxSpec[] = [
      { txid: 1, time: T0, dbSize: 1, pages: [] },
      { txid: 2, time: T0, dbSize: 4, pages: [[4, 1], [2, 1], [4, 2]] },
    ];
    const { body } = await decodeSegment(await segmentOf(512, txs, 'zstd'));
    const got = [...iterateTransactions(body, 512)];
    assert.equal(got[0]!.pages.length, 0);
    assert.deepEqual(got[1]!.pages.map((p) => p.pgno), [4, 2, 4]);
    assertTxsMatch(got, txs, 512);
  });

  it('deflate shrinks typical pages and honours the level', async () => {
    const txs = sampleTxs(1, 20);
    const body = buildBody(4096, txs);
    const h = headerFor(4096, txs, 'deflate');
    const l1 = await encodeSegment(h, body);
    const l9 = await encodeSegment(h, body, { level: 9 });
    const l0 = await encodeSegment(h, body, { level: 0 });
    assert.ok(l1.length < body.length, 'level 1 compresses');
    assert.ok(l9.length <= l1.length, 'level 9 is no larger than level 1');
    assert.ok(l0.length > body.length, 'level 0 stores');
    for (const b of [l0, l1, l9]) assert.ok(bytesEqual((await decodeSegment(b)).body, body));
    await assert.rejects(encodeSegment(h, body, { level: 10 }), RangeError);
  });

  it('zstd shrinks typical pages', async () => {
    const txs = sampleTxs(1, 20);
    const body = buildBody(4096, txs);
    const zstd = await encodeSegment(headerFor(4096, txs, 'zstd'), body);
    assert.ok(zstd.length < body.length, `zstd ${zstd.length} bytes for a body of ${body.length}`);
    assert.ok(bytesEqual((await decodeSegment(zstd)).body, body));
  });

  it('zstd stores a body over 4 MiB as several frames that decode to it exactly, and still joins', async () => {
    const txs = sampleTxs(1, 2400);
    const body = buildBody(4096, txs);
    assert.ok(body.length > 8 << 20, `body of ${body.length} bytes spans three frames`);
    const bytes = await encodeSegment(headerFor(4096, txs, 'zstd'), body);
    const { stored } = await readStoredSegment(bytes);
    let frames = 0;
    for (let rest = stored; rest.length > 0; rest = rest.subarray(zstdBinding.findFrameCompressedSize(rest))) {
      const size = zstdBinding.getFrameContentSize(rest);
      assert.ok(size !== null && size <= 4 << 20, `frame ${frames + 1} holds ${size} bytes`);
      frames++;
    }
    assert.equal(frames, Math.ceil(body.length / (4 << 20)));
    assert.ok(bytesEqual((await decodeSegment(bytes)).body, body));
    const next = sampleTxs(2401, 3, T0 + 2400 * 7);
    const joined = await joinSegments([await readStoredSegment(bytes), await readStoredSegment(await segmentOf(4096, next, 'zstd'))]);
    const all = [...iterateTransactions((await decodeSegment(joined)).body, 4096)];
    assert.deepEqual(all.map((t) => t.txid), [...txs, ...next].map((t) => t.txid));
  });

  it('large txids and times (beyond 2^32) survive, and are stored as msgpack integers', async () => {
    const first = 2 ** 40 + 5;
    const txs = sampleTxs(first, 3, 2 ** 45);
    const bytes = await segmentOf(512, txs, 'none');
    const { header } = await decodeSegment(bytes);
    assert.equal(header.firstTxid, first);
    assert.equal(header.lastTime, 2 ** 45 + 14);
    // 0xcb would be a float64; readers in other languages expect an integer type
    const headerLen = new DataView(bytes.buffer, bytes.byteOffset).getUint32(8);
    assert.ok(!Buffer.from(bytes.subarray(12, 12 + headerLen)).includes(0xcb));
  });

  it('pages yielded are views into the body, not copies', async () => {
    const txs = sampleTxs(1, 3);
    const { body } = await decodeSegment(await segmentOf(512, txs, 'none'));
    const [tx] = iterateTransactions(body, 512);
    assert.equal(tx!.pages[0]!.data.buffer, body.buffer);
  });

  it('encode refuses a body that does not match the header', async () => {
    const txs = sampleTxs(10, 3);
    const body = buildBody(512, txs);
    const h = headerFor(512, txs, 'none');
    await assert.rejects(encodeSegment({ ...h, firstTxid: 9 }, body), RangeError);
    await assert.rejects(encodeSegment({ ...h, lastTime: h.lastTime + 1 }, body), RangeError);
    await assert.rejects(encodeSegment({ ...h, pageSize: 1024 }, body), RangeError);
    await assert.rejects(encodeSegment({ ...h, generation: 'ABCDEF0123456789' }, body), RangeError);
    await assert.rejects(encodeSegment(h, new Uint8Array(0)), RangeError);
    await assert.rejects(encodeSegment(h, body.subarray(0, body.length - 1)), RangeError);
  });
});

describe('encodeSegmentChunks (a huge transaction spooled frame by frame)', () => {
  it('makes encodeSegment\'s zstd object byte for byte, over several frames from one reused buffer', async () => {
    // 2,500 pages of 4 KiB: ~10 MiB of body, three 4 MiB frames.
    const big: TxSpec[] = [{ txid: 9, time: T0, dbSize: 2500, pages: Array.from({ length: 2500 }, (_, i) => [i + 1, i * 31] as [number, number]) }];
    for (const [pageSize, txs] of [[512, sampleTxs(7, 4)], [4096, big]] as const) {
      const body = buildBody(pageSize, txs);
      const h = headerFor(pageSize, txs, 'zstd');
      const parts: Buffer[] = [];
      const buffers = new Set<ArrayBufferLike>();
      for await (const c of encodeSegmentChunks(h, body)) {
        parts.push(Buffer.from(c));
        buffers.add(c.buffer);
      }
      assert.ok(bytesEqual(Buffer.concat(parts), await encodeSegment(h, body)));
      if (txs === big) assert.ok(parts.length >= 5 && buffers.size <= 3, `${parts.length} chunks from ${buffers.size} buffers`);
    }
  });

  it('refuses a header that does not match the body, before anything is handed on', async () => {
    const txs = sampleTxs(7, 4);
    const chunks = encodeSegmentChunks({ ...headerFor(512, txs, 'zstd'), lastTxid: 99 }, buildBody(512, txs));
    await assert.rejects(chunks.next(), RangeError);
  });
});

describe('segment corruption', () => {
  for (const compression of ['none', 'deflate', 'zstd'] as const) {
    it(`flipping any single bit of any byte is detected (${compression})`, async () => {
      const txs = sampleTxs(7, 4);
      const bytes = await segmentOf(512, txs, compression);
      for (let i = 0; i < bytes.length; i++) {
        for (const bit of [0x01, 0x80]) {
          const bad = Uint8Array.from(bytes);
          bad[i]! ^= bit;
          await rejectsCorrupt(decodeSegment(bad, NAME), NAME);
        }
      }
    });

    it(`every truncation is detected (${compression})`, async () => {
      const bytes = await segmentOf(512, sampleTxs(7, 3), compression);
      for (let len = 0; len < bytes.length; len++) {
        await rejectsCorrupt(decodeSegment(bytes.subarray(0, len), NAME), NAME);
      }
    });
  }

  describe('verifiedStoredChunks (a large spool entry streamed to a replica)', () => {
    /** `bytes` in chunks of `size` from one reused buffer, as FileStorage.readChunks lends them; `handed`: bytes passed on (also on the error). */
    const streamed = async (bytes: Uint8Array, size: number, listed = bytes.length): Promise<{ out: Buffer; handed: number }> => {
      async function* lend(): AsyncGenerator<Uint8Array> {
        const buf = Buffer.alloc(size);
        for (let at = 0; at < bytes.length; at += size) {
          const n = Math.min(size, bytes.length - at);
          buf.set(bytes.subarray(at, at + n));
          yield buf.subarray(0, n);
        }
      }
      const got: Buffer[] = [];
      try {
        for await (const c of verifiedStoredChunks(lend(), listed, NAME)) got.push(Buffer.from(c));
      } catch (err) {
        (err as { handed?: number }).handed = got.reduce((n, c) => n + c.length, 0);
        throw err;
      }
      return { out: Buffer.concat(got), handed: got.reduce((n, c) => n + c.length, 0) };
    };

    it('passes the stored bytes on unchanged, whatever the chunk size (the trailer split across chunks too)', async () => {
      const bytes = await segmentOf(512, sampleTxs(7, 4), 'zstd');
      for (const size of [1, 3, 7, 64, bytes.length - 4, bytes.length]) {
        const { out } = await streamed(bytes, size);
        assert.ok(bytesEqual(out, bytes), `chunks of ${size}`);
      }
    });

    it('a flipped byte or a wrong length fails before the last chunk is handed on', async () => {
      const bytes = await segmentOf(512, sampleTxs(7, 4), 'zstd');
      for (const i of [0, 40, bytes.length >> 1, bytes.length - 1]) {
        const bad = Uint8Array.from(bytes);
        bad[i]! ^= 0x10;
        const err = await rejectsCorrupt(streamed(bad, 16), NAME);
        assert.ok((err as { handed?: number }).handed! < bytes.length, `byte ${i}: the object never completes`);
      }
      await rejectsCorrupt(streamed(bytes.subarray(0, bytes.length - 1), 16, bytes.length), NAME, /truncated/);
      await rejectsCorrupt(streamed(bytes, 16, bytes.length - 1), NAME, /longer/);
    });
  });

  it('says "truncated" when a stored body is cut short', async () => {
    const bytes = await segmentOf(512, sampleTxs(1, 3), 'none');
    await rejectsCorrupt(decodeSegment(bytes.subarray(0, bytes.length - 100), NAME), NAME, /truncated/);
  });

  it('rejects appended bytes', async () => {
    const bytes = await segmentOf(512, sampleTxs(1, 3), 'deflate');
    await rejectsCorrupt(decodeSegment(Buffer.concat([bytes, Buffer.from([0])]), NAME), NAME);
    await rejectsCorrupt(decodeSegment(await reseal(Buffer.concat([bytes, Buffer.alloc(8)])), NAME), NAME, /stray bytes/);
    const zstd = await segmentOf(512, sampleTxs(1, 3), 'zstd');
    await rejectsCorrupt(decodeSegment(await reseal(Buffer.concat([zstd, Buffer.alloc(8)])), NAME), NAME, /does not decompress/);
    const plain = await segmentOf(512, sampleTxs(1, 3), 'none');
    await rejectsCorrupt(decodeSegment(await reseal(Buffer.concat([plain, Buffer.alloc(8)])), NAME), NAME, /body is/);
  });

  it('wrong magic: a snapshot, or something else entirely', async () => {
    const bytes = await segmentOf(512, sampleTxs(1, 2), 'none');
    const snap = Uint8Array.from(bytes);
    snap.set(new TextEncoder().encode('PITRSNP1'));
    await rejectsCorrupt(decodeSegment(snap, NAME), NAME, /snapshot, not a segment/);
    throwsCorrupt(() => readSegmentHeader(snap, NAME), NAME, /snapshot/);
    const other = await reseal(Uint8Array.from(bytes).fill(0x41, 0, 8));
    await rejectsCorrupt(decodeSegment(other, NAME), NAME, /wrong magic "AAAAAAAA"/);
    await rejectsCorrupt(decodeSegment(new TextEncoder().encode('SQLite format 3\0 and more bytes here'), NAME), NAME, /magic/);
  });

  it('an unknown version is refused with a clear message', async () => {
    const txs = sampleTxs(1, 2);
    const body = buildBody(512, txs);
    const h = { version: 3, kind: 'segment', ...headerFor(512, txs, 'none'), bodyLength: body.length };
    const v3 = await frame('PITRSEG1', h, body);
    const err = await rejectsCorrupt(decodeSegment(v3, NAME), NAME, /format version 3.*does not support.*reads versions 1 and 2/);
    assert.match(err.hint!, /upgrade/);
    throwsCorrupt(() => readSegmentHeader(v3, NAME), NAME, /format version 3/);
    // A version changed by damage is reported as both.
    const damaged = Uint8Array.from(await segmentOf(512, txs, 'none'));
    const at = Buffer.from(damaged).indexOf(Buffer.from('version', 'latin1')) + 7;
    assert.equal(damaged[at], 2);
    damaged[at] = 4;
    await rejectsCorrupt(decodeSegment(damaged, NAME), NAME, /format version 4.*checksum mismatch/);
  });

  describe('checks behind a valid checksum', () => {
    const ps = 512;
    const txs = sampleTxs(100, 3);
    const body = buildBody(ps, txs);
    const good = { version: 1, kind: 'segment', ...headerFor(ps, txs, 'none'), bodyLength: body.length };

    const cases: [string, Record<string, unknown>, Uint8Array, RegExp][] = [
      ['firstTxid off by one', { ...good, firstTxid: 99 }, body, /txids 99\.\.102.*100\.\.102/],
      ['lastTxid beyond the body', { ...good, lastTxid: 103 }, body, /txids/],
      ['time range mismatch', { ...good, lastTime: good.lastTime + 1 }, body, /commit times/],
      ['bodyLength mismatch', { ...good, bodyLength: body.length + 1 }, body, /body is/],
      ['kind', { ...good, kind: 'snapshot' }, body, /kind/],
      ['generation in upper case', { ...good, generation: GEN.toUpperCase() }, body, /generation/],
      ['page size not a power of two', { ...good, pageSize: 1000 }, body, /power of two/],
      ['page size too large', { ...good, pageSize: 131072 }, body, /pageSize/],
      ['compression unknown', { ...good, compression: 'zstd' }, body, /compression/],
      ['txid zero', { ...good, firstTxid: 0 }, body, /firstTxid/],
      ['txid as a string', { ...good, firstTxid: '100' }, body, /firstTxid/],
      ['range backwards', { ...good, firstTxid: 102, lastTxid: 100 }, body, /before/],
      ['missing version', Object.fromEntries(Object.entries(good).filter(([k]) => k !== 'version')), body, /no version/],
      [
        'non-contiguous txids',
        { ...good, firstTxid: 1, lastTxid: 3 },
        rawBody(ps, [{ page: 1 }, { commit: [5, 1, T0] }, { commit: [5, 3, T0] }]),
        /txid 3 .*does not follow txid 1/,
      ],
      [
        'txids going backwards',
        { ...good, firstTxid: 2, lastTxid: 1 },
        rawBody(ps, [{ commit: [5, 2, T0] }, { commit: [5, 1, T0] }]),
        /before|follow/,
      ],
      [
        'commit time going backwards',
        { ...good, firstTxid: 1, lastTxid: 2, firstTime: T0, lastTime: T0 - 1 },
        rawBody(ps, [{ commit: [5, 1, T0] }, { commit: [5, 2, T0 - 1] }]),
        /before|backwards/,
      ],
      [
        'pages after the last commit',
        { ...good, firstTxid: 1, lastTxid: 1, firstTime: T0, lastTime: T0 },
        rawBody(ps, [{ commit: [5, 1, T0] }, { page: 2 }]),
        /not followed by a commit/,
      ],
      [
        'database size zero',
        { ...good, firstTxid: 1, lastTxid: 1, firstTime: T0, lastTime: T0 },
        rawBody(ps, [{ commit: [0, 1, T0] }]),
        /database size 0/,
      ],
      [
        'a body with no transaction',
        { ...good, bodyLength: 24 },
        new Uint8Array(24).fill(0),
        /database size 0|no transaction/,
      ],
    ];
    for (const [what, header, stored, pattern] of cases) {
      it(what, async () => {
        const h = { ...header };
        if (h['bodyLength'] === good.bodyLength && stored !== body) h['bodyLength'] = stored.length;
        await rejectsCorrupt(decodeSegment(await frame('PITRSEG1', h, stored), NAME), NAME, pattern);
      });
    }

    it('body ending inside a page record', async () => {
      const cut = body.subarray(0, 4 + 100);
      const h = { ...good, bodyLength: cut.length };
      await rejectsCorrupt(decodeSegment(await frame('PITRSEG1', h, cut), NAME), NAME, /ends inside/);
    });

    it('deflate body that does not inflate, or inflates to the wrong length', async () => {
      const h = { ...good, compression: 'deflate' };
      await rejectsCorrupt(decodeSegment(await frame('PITRSEG1', h, new Uint8Array([0xff, 0xff, 0xff, 0xff])), NAME), NAME, /inflate/);
      const longer = deflateRawSync(Buffer.concat([body, Buffer.alloc(1)]));
      await rejectsCorrupt(decodeSegment(await frame('PITRSEG1', h, longer), NAME), NAME, /inflate/);
      const shorter = deflateRawSync(body.subarray(0, body.length - 24));
      await rejectsCorrupt(decodeSegment(await frame('PITRSEG1', h, shorter), NAME), NAME, /inflates to/);
    });

    it('zstd body that does not decompress, or decompresses to the wrong length, or in a version-1 header', async () => {
      const h = { ...good, version: 2, compression: 'zstd' };
      await rejectsCorrupt(decodeSegment(await frame('PITRSEG1', h, new Uint8Array([0xff, 0xff, 0xff, 0xff])), NAME), NAME, /does not decompress/);
      const longer = zstdFrame(Buffer.concat([body, Buffer.alloc(1)]));
      await rejectsCorrupt(decodeSegment(await frame('PITRSEG1', h, longer), NAME), NAME, /does not decompress/);
      const shorter = zstdFrame(body.subarray(0, body.length - 24));
      await rejectsCorrupt(decodeSegment(await frame('PITRSEG1', h, shorter), NAME), NAME, /does not decompress/);
      // Two frames whose sum is right decode; the codec state after a failure does not leak.
      const halves = Buffer.concat([zstdFrame(body.subarray(0, 100)), zstdFrame(body.subarray(100))]);
      assert.ok(bytesEqual((await decodeSegment(await frame('PITRSEG1', h, halves), NAME)).body, body));
      const v1 = { ...h, version: 1 };
      await rejectsCorrupt(decodeSegment(await frame('PITRSEG1', v1, zstdFrame(body)), NAME), NAME, /"zstd" needs format version 2/);
      // A valid frame that does not declare its content size (pitr's writers always declare it).
      const cctx = new zstdBinding.CCtx();
      cctx.setParameter(zstdBinding.CParameter.contentSizeFlag, 0);
      const out = Buffer.alloc(zstdBinding.compressBound(body.length));
      const undeclared = out.subarray(0, cctx.compress2(out, body));
      assert.equal(zstdBinding.getFrameContentSize(undeclared), null);
      await rejectsCorrupt(decodeSegment(await frame('PITRSEG1', h, undeclared), NAME), NAME, /does not decompress/);
    });

    it('header that is not a msgpack map, or has a silly length', async () => {
      const arr = pack([1, 2, 3]);
      const bytes = new Uint8Array(12 + arr.length + 8);
      bytes.set(new TextEncoder().encode('PITRSEG1'));
      new DataView(bytes.buffer).setUint32(8, arr.length);
      bytes.set(arr, 12);
      await rejectsCorrupt(decodeSegment(await reseal(bytes), NAME), NAME, /msgpack map/);
      const ok = await frame('PITRSEG1', good, body);
      for (const len of [0, 5000, 0xffffffff]) {
        const bad = Uint8Array.from(ok);
        new DataView(bad.buffer).setUint32(8, len);
        await rejectsCorrupt(decodeSegment(await reseal(bad), NAME), NAME, /header length/);
      }
      const short = Uint8Array.from(ok);
      new DataView(short.buffer).setUint32(8, new DataView(ok.buffer).getUint32(8) - 1);
      await rejectsCorrupt(decodeSegment(await reseal(short), NAME), NAME, /msgpack/);
    });

    it('the same framing with correct values decodes (the cases above differ only where stated)', async () => {
      const { header } = await decodeSegment(await frame('PITRSEG1', good, body), NAME);
      assert.equal(header.firstTxid, 100);
    });
  });

  it('an object whose key does not describe it is refused', async () => {
    const txs = sampleTxs(10, 3);
    const bytes = await segmentOf(512, txs, 'none');
    const h = headerFor(512, txs, 'none');
    const right = segmentKey(GEN, h.firstTxid, h.lastTxid, h.firstTime, h.lastTime);
    assert.equal((await decodeSegment(bytes, right)).header.firstTxid, 10);
    assert.equal(readSegmentHeader(bytes, right).lastTxid, 12);
    const wrong = [
      segmentKey(GEN, h.firstTxid, h.lastTxid + 1, h.firstTime, h.lastTime),
      segmentKey(GEN, h.firstTxid, h.lastTxid, h.firstTime, h.lastTime + 1),
      segmentKey('fedcba9876543210', h.firstTxid, h.lastTxid, h.firstTime, h.lastTime),
      snapshotKey(GEN, h.lastTxid, h.lastTime),
    ];
    for (const key of wrong) {
      await rejectsCorrupt(decodeSegment(bytes, key), key, /does not match its key/);
      throwsCorrupt(() => readSegmentHeader(bytes, key), key, /does not match its key/);
    }
  });

  it('without a name the message still says what it is', async () => {
    const bytes = Uint8Array.from(await segmentOf(512, sampleTxs(1, 2), 'none'));
    bytes[bytes.length - 1]! ^= 1;
    const err = await rejectsCorrupt(decodeSegment(bytes), undefined, /^segment object is corrupt: checksum mismatch/);
    assert.equal(err.name, 'PitrError');
  });
});

describe('bodies joined byte for byte', () => {
  it('iterateTransactions catches a seam that skips txids, even without headers', async () => {
    const s1 = await decodeSegment(await segmentOf(512, sampleTxs(1, 3), 'none'));
    const s3 = await decodeSegment(await segmentOf(512, sampleTxs(5, 2, T0 + 100), 'none'));
    const body = Buffer.concat([s1.body, s3.body]);
    const seen: number[] = [];
    try {
      for (const tx of iterateTransactions(body, 512, 'joined')) seen.push(tx.txid);
      assert.fail('expected an error');
    } catch (err) {
      assertCorrupt(err, 'joined', /txid 5 .*does not follow txid 3/);
    }
    assert.deepEqual(seen, [1, 2, 3]);
  });

  it('iterateTransactions refuses a body cut mid-record', () => {
    const body = buildBody(512, sampleTxs(1, 2));
    throwsCorrupt(() => [...iterateTransactions(body.subarray(0, body.length - 1), 512)], undefined, /ends inside/);
    throwsCorrupt(() => [...iterateTransactions(body.subarray(0, 4 + 512), 512)], undefined, /not followed by a commit/);
  });
});

describe('joined segments (shipper merges without decompressing)', () => {
  for (const compression of ['zstd', 'deflate'] as const) {
    const joinable = (pageSize: number, txs: TxSpec[]): Promise<Uint8Array> =>
      encodeSegment(headerFor(pageSize, txs, compression), buildBody(pageSize, txs), { joinable: true });

    it(`${compression}: decode to the whole chain, and join again`, async () => {
      const a = sampleTxs(1, 5);
      const b = sampleTxs(6, 1, a[4]!.time);
      const c = sampleTxs(7, 6, a[4]!.time + 1);
      const d = sampleTxs(13, 2, c[5]!.time + 5);
      const parts = [];
      for (const txs of [a, b, c]) parts.push(await readStoredSegment(await joinable(4096, txs)));
      assert.ok(parts.every(canJoin));
      const joined = await joinSegments(parts);
      const key = segmentKey(GEN, 1, c[5]!.txid, a[0]!.time, c[5]!.time);
      const decoded = await decodeSegment(joined, key);
      assert.deepEqual(
        { first: decoded.header.firstTxid, last: decoded.header.lastTxid, firstTime: decoded.header.firstTime, lastTime: decoded.header.lastTime },
        { first: 1, last: 12, firstTime: a[0]!.time, lastTime: c[5]!.time },
      );
      assert.equal(decoded.header.bodyLength, parts.reduce((n, p) => n + p.header.bodyLength, 0));
      assert.equal(decoded.header.compression, compression);
      assertTxsMatch([...iterateTransactions(decoded.body, 4096)], [...a, ...b, ...c], 4096);

      // A joined object is joinable itself: the shipper may merge merged objects.
      const again = await joinSegments([await readStoredSegment(joined), await readStoredSegment(await joinable(4096, d))]);
      assertTxsMatch([...iterateTransactions((await decodeSegment(again)).body, 4096)], [...a, ...b, ...c, ...d], 4096);
    });

    it(`${compression}: pass a single part on unchanged`, async () => {
      const bytes = await joinable(512, sampleTxs(1, 3));
      assert.ok(bytesEqual(await joinSegments([await readStoredSegment(bytes)]), bytes));
    });

    it(`${compression}: refuse parts that are not joinable, of another compression, or not one chain`, async () => {
      const s1 = await readStoredSegment(await joinable(512, sampleTxs(1, 3)));
      const raw = await readStoredSegment(await segmentOf(512, sampleTxs(4, 1, T0 + 100), 'none'));
      const finished = await readStoredSegment(await segmentOf(512, sampleTxs(4, 1, T0 + 100), 'deflate'));
      const other = compression === 'zstd' ? 'deflate' : 'zstd';
      const otherCodec = await readStoredSegment(await encodeSegment(headerFor(512, sampleTxs(4, 1, T0 + 100), other), buildBody(512, sampleTxs(4, 1, T0 + 100)), { joinable: true }));
      assert.equal(canJoin(raw), false);
      assert.equal(canJoin(finished), false);
      assert.equal(canJoin(otherCodec), true);
      for (const next of [raw, finished, otherCodec]) await assert.rejects(joinSegments([s1, next]), RangeError);
      await assert.rejects(joinSegments([]), RangeError);
      const gap = await readStoredSegment(await joinable(512, sampleTxs(5, 2, T0 + 100)));
      const overlap = await readStoredSegment(await joinable(512, sampleTxs(3, 2, T0 + 100)));
      const backwards = await readStoredSegment(await joinable(512, sampleTxs(4, 1, T0 - 1)));
      const otherGen = await readStoredSegment(
        await encodeSegment({ ...headerFor(512, sampleTxs(4, 1, T0 + 100), compression), generation: 'fedcba9876543210' }, buildBody(512, sampleTxs(4, 1, T0 + 100)), { joinable: true }),
      );
      const otherSize = await readStoredSegment(await joinable(1024, sampleTxs(4, 1, T0 + 100)));
      for (const next of [gap, overlap, backwards, otherGen, otherSize]) {
        await assert.rejects(joinSegments([s1, next]), (err: unknown) => err instanceof PitrError && err.code === 'CHAIN_BROKEN');
      }
    });
  }

  it('readStoredSegment verifies the checksum before anything is passed on', async () => {
    const bytes = await segmentOf(512, sampleTxs(1, 3), 'zstd');
    const bad = Uint8Array.from(bytes);
    bad[bad.length - 20]! ^= 0x01;
    await rejectsCorrupt(readStoredSegment(bad, NAME), NAME, /checksum/);
  });
});
