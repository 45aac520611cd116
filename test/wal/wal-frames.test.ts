import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { copyFileSync, readFileSync, truncateSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { join } from 'node:path';
import { setImmediate as tick } from 'node:timers/promises';
import { test } from 'node:test';
import { isPitrError } from '../../src/errors.js';
import { WAL_FRAME_HEADER_SIZE, frameOffset } from '../../src/wal/wal-format.js';
import { readWalPageSync, readWalPages } from '../../src/wal/wal-frames.js';
import { scanWal, type WalScanResult } from '../../src/wal/wal-scan.js';
import { openLab, sqlite3, type WalLab } from './wal-lab.js';

type Ok = Extract<WalScanResult, { kind: 'ok' }>;

async function scanOk(path: string): Promise<Ok> {
  const r = await scanWal(path, null);
  assert.equal(r.kind, 'ok');
  return r as Ok;
}

/** A WAL with small commits and one commit larger than a 4 MiB read chunk. */
function bigWal(lab: WalLab): string {
  lab.insertTx(3, 2000);
  lab.db.pragma('cache_size=10');
  const ins = lab.db.prepare('INSERT INTO t(v) VALUES (?)');
  lab.db.transaction(() => {
    for (let i = 0; i < 150; i++) ins.run(randomBytes(40_000));
  })();
  lab.insertTx(1, 10);
  return lab.copyWal('w');
}

test('readWalPages hands over exactly the bytes of each frame, in frame order, across chunk boundaries', async (t) => {
  const lab = openLab(t);
  const wal = bigWal(lab);
  const r = await scanOk(wal);
  const file = readFileSync(wal);
  const fh = await open(wal, 'r');
  t.after(() => fh.close());
  for (const c of r.commits) {
    const seen: number[] = [];
    let frame = c.firstFrame;
    await readWalPages(fh, r.cursor, c.firstFrame, c.pgnos, (pgno, data) => {
      const o = frameOffset(frame, 4096) + WAL_FRAME_HEADER_SIZE;
      assert.equal(data.length, 4096);
      assert.ok(Buffer.from(data.buffer, data.byteOffset, data.length).equals(file.subarray(o, o + 4096)), `bytes of frame ${frame}`);
      seen.push(pgno);
      frame++;
    });
    assert.deepEqual(seen, [...c.pgnos]);
  }
  assert.ok(r.commits.some((c) => (c.lastFrame - c.firstFrame + 1) * 4120 > 4 << 20), 'one commit spans more than one chunk');
});

test('applying every commit through readWalPages rebuilds the database sqlite3 sees', async (t) => {
  const lab = openLab(t);
  const base = join(lab.dir, 'base.db');
  copyFileSync(lab.dbPath, base); // before any checkpoint the main file holds none of the WAL's pages
  const wal = bigWal(lab);
  const r = await scanOk(wal);
  const out = join(lab.dir, 'rebuilt.db');
  copyFileSync(base, out);
  const rfh = await open(wal, 'r');
  const wfh = await open(out, 'r+');
  try {
    for (const c of r.commits) {
      // onPage may be async: writes must land in order before the next page is offered.
      await readWalPages(rfh, r.cursor, c.firstFrame, c.pgnos, async (pgno, data) => {
        await wfh.write(data, 0, data.length, (pgno - 1) * 4096);
      });
      await wfh.truncate(c.dbSizePages * 4096);
    }
  } finally {
    await rfh.close();
    await wfh.close();
  }
  assert.equal(sqlite3(out, 'PRAGMA integrity_check'), 'ok');
  assert.equal(Number(sqlite3(out, 'SELECT count(*) FROM t')), lab.rows());
  assert.equal(Number(sqlite3(out, 'PRAGMA page_count')), r.commits.at(-1)!.dbSizePages);
});

test('readWalPages throws WAL_INVALID when salts changed, a pgno differs or the file got shorter', async (t) => {
  const lab = openLab(t);
  for (let i = 0; i < 3; i++) lab.insertTx(3, 3000);
  const wal = lab.copyWal('w');
  const r = await scanOk(wal);
  const c = r.commits.at(-1)!;
  const fh = await open(wal, 'r');
  t.after(() => fh.close());
  const noop = (): void => undefined;

  await assert.rejects(readWalPages(fh, { ...r.cursor, salt2: r.cursor.salt2 + 1 }, c.firstFrame, c.pgnos, noop), (e) => isPitrError(e, 'WAL_INVALID'));
  const wrong = c.pgnos.slice();
  wrong[wrong.length - 1] = wrong[wrong.length - 1]! + 1000;
  const delivered: number[] = [];
  await assert.rejects(readWalPages(fh, r.cursor, c.firstFrame, wrong, (p) => void delivered.push(p)), (e) => isPitrError(e, 'WAL_INVALID'));
  assert.deepEqual(delivered, [...c.pgnos.subarray(0, -1)]);

  // The real thing: the WAL restarted underneath (new salts) after we scanned it.
  lab.db.pragma('wal_checkpoint(PASSIVE)');
  lab.insertTx(1, 10);
  const restarted = lab.copyWal('restarted');
  const fh2 = await open(restarted, 'r');
  t.after(() => fh2.close());
  await assert.rejects(readWalPages(fh2, r.cursor, r.commits[0]!.firstFrame, r.commits[0]!.pgnos, noop), (e) => isPitrError(e, 'WAL_INVALID'));

  const short = join(lab.dir, 'short');
  copyFileSync(wal, short);
  truncateSync(short, frameOffset(c.lastFrame, 4096) + 100);
  const fh3 = await open(short, 'r');
  t.after(() => fh3.close());
  await assert.rejects(readWalPages(fh3, r.cursor, c.firstFrame, c.pgnos, noop), (e) => isPitrError(e, 'WAL_INVALID'));
});

test('an error thrown by onPage propagates and leaves the reader usable', async (t) => {
  const lab = openLab(t);
  const wal = bigWal(lab);
  const r = await scanOk(wal);
  const big = r.commits.reduce((a, b) => (b.pgnos.length > a.pgnos.length ? b : a));
  const fh = await open(wal, 'r');
  t.after(() => fh.close());
  let n = 0;
  await assert.rejects(
    readWalPages(fh, r.cursor, big.firstFrame, big.pgnos, async () => {
      await tick();
      if (++n === 5) throw new Error('consumer failed');
    }),
    /consumer failed/,
  );
  assert.equal(n, 5);
  let count = 0;
  await readWalPages(fh, r.cursor, big.firstFrame, big.pgnos, () => void count++);
  assert.equal(count, big.pgnos.length);
  assert.deepEqual(await scanWal(wal, null), r);
});

test('readWalPageSync reads one frame and reports whether it still holds that page under those salts', async (t) => {
  const lab = openLab(t);
  lab.insertTx(3, 3000);
  const wal = lab.copyWal('w');
  const r = await scanOk(wal);
  const c = r.commits.at(-1)!;
  const file = readFileSync(wal);
  const fh = await open(wal, 'r');
  t.after(() => fh.close());
  const buf = new Uint8Array(4096);
  const pgno = c.pgnos[0]!;
  assert.equal(readWalPageSync(fh.fd, r.cursor, c.firstFrame, pgno, buf), true);
  const o = frameOffset(c.firstFrame, 4096) + WAL_FRAME_HEADER_SIZE;
  assert.ok(Buffer.from(buf).equals(file.subarray(o, o + 4096)));
  assert.equal(readWalPageSync(fh.fd, r.cursor, c.firstFrame, pgno + 1, buf), false);
  assert.equal(readWalPageSync(fh.fd, { ...r.cursor, salt1: r.cursor.salt1 ^ 0x80000000 }, c.firstFrame, pgno, buf), false);
  assert.equal(readWalPageSync(fh.fd, r.cursor, c.lastFrame + 1, pgno, buf), false);
  assert.throws(() => readWalPageSync(fh.fd, r.cursor, c.firstFrame, pgno, new Uint8Array(100)), RangeError);
});
