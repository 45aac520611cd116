import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createReadStream, createWriteStream } from 'node:fs';
import { mkdtemp, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomFillSync } from 'node:crypto';
import { deflateRawSync } from 'node:zlib';
import { zstdFrame } from '../fixtures/zstd-frame.js';
import { PassThrough, Readable, Writable } from 'node:stream';
import { PitrError } from '../../src/errors.js';
import {
  readSnapshot,
  readSnapshotHeader,
  writeSnapshot,
  type OnPages,
  type SnapshotHeader,
  type SnapshotHeaderInput,
} from '../../src/segment/index.js';
import type { Compression } from '../../src/segment/segment-types.js';
import { segmentKey, snapshotKey } from '../../src/segment/object-names.js';
import { GEN, T0, assertCorrupt, bytesEqual, frame, makePage, rejectsCorrupt, reseal } from './fixtures.js';

const NAME = 'generations/0123456789abcdef/snapshots/x.snap';

function hdr(pageSize: number, dbSizePages: number, compression: Compression): SnapshotHeaderInput {
  return { generation: GEN, pageSize, txid: 42, commitTime: T0, dbSizePages, compression };
}

/** Collects a stream into memory; for small snapshots only. */
class Collect extends Writable {
  chunks: Buffer[] = [];
  override _write(chunk: Buffer, _enc: BufferEncoding, cb: (err?: Error | null) => void): void {
    this.chunks.push(chunk);
    cb();
  }
  get bytes(): Uint8Array {
    return Buffer.concat(this.chunks);
  }
}

async function snapshotBytes(h: SnapshotHeaderInput, opts?: { level?: number }): Promise<Uint8Array> {
  const sink = new Collect();
  const n = await writeSnapshot(sink, h, (pgno) => makePage(h.pageSize, pgno), opts);
  assert.equal(n, sink.bytes.length);
  return sink.bytes;
}

/** Feeds bytes in uneven chunks, to exercise pages that straddle chunk boundaries. */
function chunked(bytes: Uint8Array, sizes = [1, 7, 500, 3, 4096, 13]): Readable {
  const parts: Buffer[] = [];
  for (let at = 0, i = 0; at < bytes.length; i++) {
    const n = sizes[i % sizes.length]!;
    parts.push(Buffer.from(bytes.subarray(at, at + n)));
    at += n;
  }
  return Readable.from(parts, { objectMode: false });
}

/** The reader's runs of pages, one call per page (data valid during the call only, as for runs). */
function perPage(pageSize: number, onPage: (pgno: number, data: Uint8Array) => void | Promise<void>): OnPages {
  return async (first, pages, offset) => {
    assert.equal(offset, (first - 1) * pageSize);
    assert.equal(pages.length % pageSize, 0);
    for (let i = 0; i * pageSize < pages.length; i++) await onPage(first + i, pages.subarray(i * pageSize, (i + 1) * pageSize));
  };
}

async function readAll(input: Readable, name?: string): Promise<{ header: SnapshotHeader; pages: Uint8Array[] }> {
  const runs: { first: number; offset: number; data: Uint8Array }[] = [];
  const header = await readSnapshot(
    input,
    (first, data, offset) => void runs.push({ first, offset, data: Uint8Array.from(data) }),
    name === undefined ? undefined : { name },
  );
  // Runs come in order, whole pages each; split them once the page size is known.
  const pages: Uint8Array[] = [];
  for (const run of runs) {
    assert.equal(run.first, pages.length + 1);
    assert.equal(run.offset, (run.first - 1) * header.pageSize);
    assert.equal(run.data.length % header.pageSize, 0);
    for (let at = 0; at < run.data.length; at += header.pageSize) pages.push(run.data.subarray(at, at + header.pageSize));
  }
  return { header, pages };
}

let dir: string;
before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'pitr-snapshot-test-'));
});
after(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('snapshot round trip', () => {
  for (const compression of ['none', 'deflate', 'zstd'] as const) {
    it(`through a real file, 3000 pages of 4096, ${compression}`, async () => {
      const h = hdr(4096, 3000, compression);
      const path = join(dir, `rt-${compression}.snap`);
      // One reused buffer: nothing but the page being asked for exists on the producer side.
      const buf = new Uint8Array(4096);
      let asked = 0;
      const written = await writeSnapshot(createWriteStream(path), h, async (pgno) => {
        assert.equal(pgno, ++asked, 'pages are asked for in order');
        buf.set(makePage(4096, pgno));
        return buf;
      });
      assert.equal(asked, 3000);
      assert.equal((await stat(path)).size, written);
      if (compression !== 'none') assert.ok(written < 3000 * 4096);
      else assert.ok(written > 3000 * 4096);

      let next = 1;
      const header = await readSnapshot(createReadStream(path), perPage(4096, async (pgno, data) => {
        assert.equal(pgno, next++);
        assert.ok(bytesEqual(data, makePage(4096, pgno)), `page ${pgno}`);
      }), { name: path });
      assert.equal(next, 3001);
      // Since version 2, a compressed body is chunks of 1 MiB of pages, each compressed on its own.
      assert.deepEqual(header, { version: 3, kind: 'snapshot', ...h, ...(compression !== 'none' ? { chunkPages: 256 } : {}) });
      const first = await readFile(path);
      assert.deepEqual(readSnapshotHeader(first.subarray(0, 4096), path), header);
    });
  }

  for (const pageSize of [512, 65536]) {
    for (const compression of ['none', 'deflate', 'zstd'] as const) {
      it(`page size ${pageSize}, ${compression}, read in uneven chunks`, async () => {
        const h = hdr(pageSize, 9, compression);
        const bytes = await snapshotBytes(h);
        const { header, pages } = await readAll(chunked(bytes));
        assert.equal(header.pageSize, pageSize);
        assert.equal(pages.length, 9);
        pages.forEach((p, i) => assert.ok(bytesEqual(p, makePage(pageSize, i + 1))));
      });
    }
  }

  it('a one-page database, and level 9', async () => {
    const bytes = await snapshotBytes(hdr(1024, 1, 'deflate'), { level: 9 });
    const { pages } = await readAll(Readable.from([Buffer.from(bytes)]));
    assert.equal(pages.length, 1);
  });

  it('txid 0 (before the first transaction of a generation) is allowed', async () => {
    const bytes = await snapshotBytes({ ...hdr(512, 2, 'none'), txid: 0 });
    assert.equal((await readAll(Readable.from([Buffer.from(bytes)]))).header.txid, 0);
  });

  it('writer refuses bad arguments', async () => {
    await assert.rejects(writeSnapshot(new Collect(), hdr(512, 2, 'none'), () => new Uint8Array(511)), RangeError);
    await assert.rejects(writeSnapshot(new Collect(), { ...hdr(512, 2, 'none'), dbSizePages: 0 }, () => new Uint8Array(512)), RangeError);
    await assert.rejects(writeSnapshot(new Collect(), { ...hdr(512, 2, 'none'), generation: 'nope' }, () => new Uint8Array(512)), RangeError);
    await assert.rejects(writeSnapshot(new Collect(), hdr(512, 2, 'deflate'), () => new Uint8Array(512), { level: -1 }), RangeError);
  });

  it('nextPage errors reach the caller unchanged', async () => {
    const boom = new Error('database file vanished');
    const sink = new Collect();
    await assert.rejects(
      writeSnapshot(sink, hdr(512, 100, 'deflate'), (pgno) => {
        if (pgno === 50) throw boom;
        return makePage(512, pgno);
      }),
      (err) => err === boom,
    );
    assert.ok(sink.destroyed, 'the destination is destroyed so a partial object is not mistaken for one');
  });

  it('end: false leaves the destination open', async () => {
    const pt = new PassThrough();
    const chunks: Buffer[] = [];
    pt.on('data', (c: Buffer) => chunks.push(c));
    const n = await writeSnapshot(pt, hdr(512, 5, 'none'), (pgno) => makePage(512, pgno), { end: false });
    assert.equal(pt.writableEnded, false);
    pt.end();
    assert.equal(Buffer.concat(chunks).length, n);
  });
});

describe('snapshot memory stays bounded', () => {
  const ps = 4096;
  const count = 8000; // 32 MiB
  // Writing with deflate: up to 4 slices of 1 MiB compressing, one held back (to know which is
  // last) and one filling; with zstd one batch compressing (synchronously) and one filling; far
  // below the 32 MiB an unbounded producer would run ahead.
  const bounds = { none: 2 * 1024 * 1024, deflate: 8 * 1024 * 1024, zstd: 4 * 1024 * 1024 };
  // Reading with deflate: up to 4 compressed chunks of ~1 MiB inflating, one being delivered; with
  // zstd one chunk decompressing, one being delivered.
  const readBounds = { none: 2 * 1024 * 1024, deflate: 6 * 1024 * 1024, zstd: 4 * 1024 * 1024 };

  /** Incompressible pages, so that bytes in and bytes out of deflate are comparable. */
  function noise(): Uint8Array {
    return randomFillSync(new Uint8Array(ps));
  }

  for (const compression of ['none', 'deflate', 'zstd'] as const) {
    it(`writer pulls pages only as fast as a slow destination accepts them (${compression})`, async () => {
      let sunk = 0;
      let maxAhead = 0;
      const slow = new Writable({
        highWaterMark: 16 * 1024,
        write(chunk: Buffer, _enc, cb) {
          sunk += chunk.length;
          setImmediate(cb);
        },
      });
      await writeSnapshot(slow, hdr(ps, count, compression), (pgno) => {
        maxAhead = Math.max(maxAhead, pgno * ps - sunk);
        return noise();
      });
      assert.ok(sunk > count * ps * 0.9);
      assert.ok(maxAhead < bounds[compression], `producer ran ${maxAhead} bytes ahead of the destination`);
    });

    it(`reader pulls input only as fast as onPage consumes pages (${compression})`, async () => {
      const sink = new Collect();
      await writeSnapshot(sink, hdr(ps, count, compression), noise);
      const bytes = sink.bytes;
      let pulled = 0;
      let at = 0;
      const input = new Readable({
        highWaterMark: 16 * 1024,
        read() {
          const n = Math.min(16 * 1024, bytes.length - at);
          if (n === 0) return this.push(null);
          this.push(Buffer.from(bytes.subarray(at, at + n)));
          at += n;
          pulled += n;
        },
      });
      let maxAhead = 0;
      await readSnapshot(input, perPage(ps, async (pgno) => {
        maxAhead = Math.max(maxAhead, pulled - pgno * ps);
        if (pgno % 64 === 0) await new Promise((r) => setImmediate(r));
      }));
      assert.ok(maxAhead < readBounds[compression], `reader pulled ${maxAhead} bytes ahead of onPage`);
    });
  }
});

describe('snapshot corruption', () => {
  for (const compression of ['none', 'deflate', 'zstd'] as const) {
    it(`flipping a bit in any byte is detected (${compression})`, async () => {
      const bytes = await snapshotBytes(hdr(512, 6, compression));
      for (let i = 0; i < bytes.length; i++) {
        const bad = Buffer.from(bytes);
        bad[i]! ^= 1 << (i % 8);
        await rejectsCorrupt(readAll(Readable.from([bad]), NAME), NAME);
      }
    });

    it(`every truncation is detected (${compression})`, async () => {
      const bytes = await snapshotBytes(hdr(512, 6, compression));
      for (let len = 0; len < bytes.length; len++) {
        await rejectsCorrupt(readAll(chunked(bytes.subarray(0, len)), NAME), NAME);
      }
    });

    it(`appended bytes are detected (${compression})`, async () => {
      const bytes = await snapshotBytes(hdr(512, 6, compression));
      for (const extra of [1, 8, 512, 4096]) {
        await rejectsCorrupt(readAll(Readable.from([Buffer.concat([bytes, Buffer.alloc(extra)])]), NAME), NAME);
      }
    });
  }

  it('stray bytes after the compressed body are refused even with a valid checksum', async () => {
    for (const compression of ['deflate', 'zstd'] as const) {
      const bytes = await snapshotBytes(hdr(512, 6, compression));
      const longer = await reseal(Buffer.concat([bytes, Buffer.alloc(8)]));
      await rejectsCorrupt(readAll(Readable.from([Buffer.from(longer)]), NAME), NAME, /stray bytes/);
    }
  });

  it('pages may already have been delivered when the checksum fails (the caller discards them)', async () => {
    const bad = Buffer.from(await snapshotBytes(hdr(512, 6, 'none')));
    bad[bad.length - 1]! ^= 1;
    let delivered = 0;
    await rejectsCorrupt(readSnapshot(Readable.from([bad]), perPage(512, () => void delivered++), { name: NAME }), NAME, /checksum mismatch/);
    assert.equal(delivered, 6);
  });

  it('says truncated when an uncompressed snapshot is cut short', async () => {
    const bytes = await snapshotBytes(hdr(512, 6, 'none'));
    await rejectsCorrupt(readAll(Readable.from([Buffer.from(bytes.subarray(0, bytes.length - 700))]), NAME), NAME, /truncated/);
  });

  it('wrong magic, a segment, an unknown version, a header that lies about the size', async () => {
    const bytes = Buffer.from(await snapshotBytes(hdr(512, 6, 'none')));
    const seg = Buffer.from(bytes);
    seg.write('PITRSEG1', 0, 'latin1');
    await rejectsCorrupt(readAll(Readable.from([seg]), NAME), NAME, /segment, not a snapshot/);
    await rejectsCorrupt(readAll(Readable.from([Buffer.from('SQLite format 3\0')]), NAME), NAME, /magic/);
    await rejectsCorrupt(readAll(Readable.from([Buffer.from('PITR')]), NAME), NAME, /magic/);

    const body = Buffer.concat(Array.from({ length: 6 }, (_, i) => makePage(512, i + 1)));
    const good = { version: 1, kind: 'snapshot', ...hdr(512, 6, 'none') };
    const v4 = await frame('PITRSNP1', { ...good, version: 4 }, body);
    await rejectsCorrupt(readAll(Readable.from([Buffer.from(v4)]), NAME), NAME, /format version 4, .*reads versions 1 and 2 and 3/);
    assert.throws(() => readSnapshotHeader(v4, NAME), /format version 4/);
    const tooFew = await frame('PITRSNP1', { ...good, dbSizePages: 5 }, body);
    await rejectsCorrupt(readAll(Readable.from([Buffer.from(tooFew)]), NAME), NAME, /longer than/);
    const tooMany = await frame('PITRSNP1', { ...good, dbSizePages: 7 }, body);
    await rejectsCorrupt(readAll(Readable.from([Buffer.from(tooMany)]), NAME), NAME, /expected 7 pages/);
    const halfPage = await frame('PITRSNP1', good, body.subarray(0, body.length - 100));
    await rejectsCorrupt(readAll(Readable.from([Buffer.from(halfPage)]), NAME), NAME, /expected 6 pages/);
    const badGen = await frame('PITRSNP1', { ...good, generation: 'x' }, body);
    await rejectsCorrupt(readAll(Readable.from([Buffer.from(badGen)]), NAME), NAME, /generation/);
    assert.ok((await readAll(Readable.from([Buffer.from(await frame('PITRSNP1', good, body))]))).pages.length === 6);
  });

  it('a version-3 zstd body: lying chunk lengths, wrong chunk sizes, a missing chunkPages, stray bytes, zstd in version 2', async () => {
    const pages = Array.from({ length: 6 }, (_, i) => new Uint8Array(512).fill(i + 1));
    const good = { version: 3, kind: 'snapshot', ...hdr(512, 6, 'zstd'), chunkPages: 4 };
    const chunks = (runs: Uint8Array[][], lie?: number): Uint8Array =>
      Buffer.concat(
        runs.flatMap((run, i) => {
          const stored = zstdFrame(Buffer.concat(run));
          const len = Buffer.alloc(4);
          len.writeUInt32BE(i === 0 && lie !== undefined ? lie : stored.length);
          return [len, stored];
        }),
      );
    const ok = await frame('PITRSNP1', good, chunks([pages.slice(0, 4), pages.slice(4)]));
    const read = await readAll(Readable.from([Buffer.from(ok)]), NAME);
    assert.equal(read.pages.length, 6);
    read.pages.forEach((p, i) => assert.ok(bytesEqual(p, pages[i]!)));
    const cases: [Uint8Array, RegExp][] = [
      [chunks([pages.slice(0, 4), pages.slice(4)], 0x7fffffff), /claims 2147483647 compressed bytes/],
      [chunks([pages.slice(0, 4), pages.slice(4)], 0), /claims 0 compressed bytes/],
      [chunks([pages.slice(0, 3), pages.slice(3)]), /chunk of page 1 does not decompress to the 2048 bytes/],
      [chunks([pages.slice(0, 5), pages.slice(5)]), /chunk of page 1 does not decompress to the 2048 bytes/],
      [Buffer.concat([chunks([pages.slice(0, 4), pages.slice(4)]), Buffer.alloc(3)]), /stray bytes after the last compressed chunk/],
      [chunks([pages.slice(0, 4)]), /truncated/],
    ];
    for (const [body, pattern] of cases) {
      await rejectsCorrupt(readAll(Readable.from([Buffer.from(await frame('PITRSNP1', good, body))]), NAME), NAME, pattern);
    }
    const { chunkPages: _omit, ...noChunkPages } = good;
    await rejectsCorrupt(readAll(Readable.from([Buffer.from(await frame('PITRSNP1', noChunkPages, chunks([pages.slice(0, 4), pages.slice(4)])))]), NAME), NAME, /chunkPages/);
    const v2 = await frame('PITRSNP1', { ...good, version: 2 }, chunks([pages.slice(0, 4), pages.slice(4)]));
    await rejectsCorrupt(readAll(Readable.from([Buffer.from(v2)]), NAME), NAME, /"zstd" needs format version 3/);
  });

  it('a version-2 deflate body: lying chunk lengths, wrong chunk sizes, a missing chunkPages, stray bytes', async () => {
    // Compressible pages, so that a chunk of too many pages still fits the length bound.
    const pages = Array.from({ length: 6 }, (_, i) => new Uint8Array(512).fill(i + 1));
    const good = { version: 2, kind: 'snapshot', ...hdr(512, 6, 'deflate'), chunkPages: 4 };
    /** A body of the given page runs, each deflated on its own behind its u32 length. */
    const chunks = (runs: Uint8Array[][], lie?: number): Uint8Array =>
      Buffer.concat(
        runs.flatMap((run, i) => {
          const stored = deflateRawSync(Buffer.concat(run));
          const len = Buffer.alloc(4);
          len.writeUInt32BE(i === 0 && lie !== undefined ? lie : stored.length);
          return [len, stored];
        }),
      );
    const ok = await frame('PITRSNP1', good, chunks([pages.slice(0, 4), pages.slice(4)]));
    const read = await readAll(Readable.from([Buffer.from(ok)]), NAME);
    assert.equal(read.pages.length, 6);
    read.pages.forEach((p, i) => assert.ok(bytesEqual(p, pages[i]!)));

    const cases: [Uint8Array, RegExp][] = [
      // A length far beyond what 4 pages can deflate to is refused before it is read.
      [chunks([pages.slice(0, 4), pages.slice(4)], 0x7fffffff), /claims 2147483647 compressed bytes/],
      [chunks([pages.slice(0, 4), pages.slice(4)], 0), /claims 0 compressed bytes/],
      // Chunks cut at other page counts than chunkPages says.
      [chunks([pages.slice(0, 3), pages.slice(3)]), /inflates to 1536 bytes, expected 2048/],
      [chunks([pages.slice(0, 5), pages.slice(5)]), /chunk of page 1 does not inflate to the 2048 bytes/],
      [Buffer.concat([chunks([pages.slice(0, 4), pages.slice(4)]), Buffer.alloc(3)]), /stray bytes after the last compressed chunk/],
      [chunks([pages.slice(0, 4)]), /truncated/],
    ];
    for (const [body, pattern] of cases) {
      await rejectsCorrupt(readAll(Readable.from([Buffer.from(await frame('PITRSNP1', good, body))]), NAME), NAME, pattern);
    }
    const { chunkPages: _omit, ...noChunkPages } = good;
    await rejectsCorrupt(readAll(Readable.from([Buffer.from(await frame('PITRSNP1', noChunkPages, chunks([pages.slice(0, 4), pages.slice(4)])))]), NAME), NAME, /chunkPages/);
  });

  it('an object whose key does not describe it is refused', async () => {
    const h = hdr(512, 6, 'deflate');
    const bytes = Buffer.from(await snapshotBytes(h));
    const right = snapshotKey(GEN, h.txid, h.commitTime);
    assert.equal((await readAll(Readable.from([bytes]), right)).header.txid, h.txid);
    for (const key of [snapshotKey(GEN, h.txid + 1, h.commitTime), snapshotKey('fedcba9876543210', h.txid, h.commitTime), segmentKey(GEN, 1, h.txid, 1, h.commitTime)]) {
      await rejectsCorrupt(readAll(Readable.from([bytes]), key), key, /does not match its key/);
      assert.throws(() => readSnapshotHeader(bytes, key), /does not match its key/);
    }
  });

  it('readSnapshotHeader needs only the header bytes, and says when it has too few', async () => {
    const bytes = await snapshotBytes(hdr(512, 6, 'deflate'));
    const len = new DataView(bytes.buffer, bytes.byteOffset).getUint32(8);
    assert.equal(readSnapshotHeader(bytes.subarray(0, 12 + len)).dbSizePages, 6);
    assert.throws(() => readSnapshotHeader(bytes.subarray(0, 11 + len), NAME), (err) => {
      assertCorrupt(err, NAME, /truncated/);
      return true;
    });
  });
});

describe('snapshot errors that are not corruption', () => {
  it('onPage errors pass through unchanged and the input is released', async () => {
    const bytes = await snapshotBytes(hdr(512, 6, 'deflate'));
    const input = Readable.from([Buffer.from(bytes)]);
    const mine = new Error('disk full');
    await assert.rejects(
      readSnapshot(input, perPage(512, (pgno) => {
        if (pgno === 3) throw mine;
      })),
      (err) => err === mine,
    );
    assert.ok(input.destroyed);
    const plain = Readable.from([Buffer.from(await snapshotBytes(hdr(512, 6, 'none')))]);
    await assert.rejects(
      readSnapshot(plain, perPage(512, async (pgno) => {
        if (pgno === 3) throw mine;
      })),
      (err) => err === mine,
    );
  });

  it('input stream errors pass through unchanged', async () => {
    const bytes = await snapshotBytes(hdr(512, 6, 'deflate'));
    const ioError = Object.assign(new Error('connection reset'), { code: 'ECONNRESET' });
    for (const cut of [5, 100, bytes.length - 3]) {
      const input = new Readable({
        read() {
          this.push(Buffer.from(bytes.subarray(0, cut)));
          this.destroy(ioError);
        },
      });
      await assert.rejects(readSnapshot(input, () => {}), (err) => err === ioError);
    }
  });

  it('a string stream is a caller error, not a corrupt object', async () => {
    const input = Readable.from(['PITRSNP1 and some text'], { objectMode: true });
    await assert.rejects(readSnapshot(input, () => {}), TypeError);
  });

  it('abort stops a write and a read with ABORTED', async () => {
    const ac = new AbortController();
    const sink = new Collect();
    await assert.rejects(
      writeSnapshot(sink, hdr(512, 1000, 'deflate'), (pgno) => {
        if (pgno === 300) ac.abort();
        return makePage(512, pgno);
      }, { signal: ac.signal }),
      (err) => err instanceof PitrError && err.code === 'ABORTED',
    );

    const bytes = await snapshotBytes(hdr(512, 1000, 'none'));
    const ac2 = new AbortController();
    const input = chunked(bytes, [4096]);
    await assert.rejects(
      readSnapshot(input, perPage(512, (pgno) => {
        if (pgno === 300) ac2.abort();
      }), { signal: ac2.signal }),
      (err) => err instanceof PitrError && err.code === 'ABORTED',
    );
    assert.ok(input.destroyed);

    const already = AbortSignal.abort();
    await assert.rejects(readSnapshot(chunked(bytes), () => {}, { signal: already }), (err) => err instanceof PitrError && err.code === 'ABORTED');
    await assert.rejects(writeSnapshot(new Collect(), hdr(512, 2, 'none'), () => makePage(512, 1), { signal: already }), (err) => err instanceof PitrError && err.code === 'ABORTED');
  });
});
