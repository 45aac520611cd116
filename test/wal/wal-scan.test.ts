import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { readFileSync, truncateSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { isPitrError } from '../../src/errors.js';
import { cursorAtHeader, type WalCursor } from '../../src/wal/wal-cursor.js';
import { WAL_FORMAT_VERSION, WAL_FRAME_HEADER_SIZE, encodeWal, frameOffset, parseWalFrameHeader, parseWalHeader, type WalFrameInput } from '../../src/wal/wal-format.js';
import { scanWal, verifyWalPrefix, type WalCommit, type WalScanResult } from '../../src/wal/wal-scan.js';
import { flipByte, openLab, reencodeWal, sqlite3, writeU32 } from './wal-lab.js';

type Ok = Extract<WalScanResult, { kind: 'ok' }>;

function ok(r: WalScanResult): Ok {
  assert.equal(r.kind, 'ok', `expected an ok scan, got ${r.kind}`);
  return r as Ok;
}

/** Commits must tile the frames after `from` with no gaps, and pgnos must match the frame headers on disk. */
function assertCommitsMatchFile(path: string, commits: WalCommit[], fromFrame: number): void {
  const bytes = new Uint8Array(readFileSync(path));
  const h = parseWalHeader(bytes)!;
  let expectFirst = fromFrame + 1;
  for (const c of commits) {
    assert.equal(c.firstFrame, expectFirst);
    assert.equal(c.pgnos.length, c.lastFrame - c.firstFrame + 1);
    for (let f = c.firstFrame; f <= c.lastFrame; f++) {
      const fh = parseWalFrameHeader(bytes, frameOffset(f, h.pageSize));
      assert.equal(c.pgnos[f - c.firstFrame], fh.pgno, `pgno of frame ${f}`);
      assert.equal(fh.dbSizePages !== 0, f === c.lastFrame, `only frame ${c.lastFrame} commits`);
    }
    assert.equal(c.dbSizePages, parseWalFrameHeader(bytes, frameOffset(c.lastFrame, h.pageSize)).dbSizePages);
    expectFirst = c.lastFrame + 1;
  }
}

test('finds every committed transaction with its database size, and sqlite3 agrees on the page count', async (t) => {
  const lab = openLab(t);
  const sizes: number[] = [];
  for (let i = 0; i < 8; i++) sizes.push(lab.insertTx(1 + i, 500 * (i + 1)));
  const walCopy = lab.copyWal('w');
  const pair = lab.copyPair('pair.db');

  const r = ok(await scanWal(walCopy, null));
  assert.equal(r.stop, 'end');
  // The CREATE TABLE in openLab is a transaction too.
  assert.equal(r.commits.length, 1 + sizes.length);
  assert.deepEqual(r.commits.slice(1).map((c) => c.dbSizePages), sizes);
  assertCommitsMatchFile(walCopy, r.commits, 0);
  const last = r.commits.at(-1)!;
  assert.equal(r.cursor.frame, last.lastFrame);
  assert.equal(r.cursor.salt1, r.header.salt1);
  assert.equal(r.cursor.pageSize, 4096);
  assert.equal(Number(sqlite3(pair, 'PRAGMA page_count')), last.dbSizePages);
  assert.equal(Number(sqlite3(pair, 'SELECT count(*) FROM t')), lab.rows());
});

test('scanning from a mid cursor finds only the later commits, and from the end finds none', async (t) => {
  const lab = openLab(t);
  lab.insertTx(2, 2000);
  lab.insertTx(2, 2000);
  const early = ok(await scanWal(lab.copyWal('early'), null));
  lab.insertTx(3, 5000);
  lab.insertTx(1, 10);
  const lateWal = lab.copyWal('late');
  const full = ok(await scanWal(lateWal, null));

  const tail = ok(await scanWal(lateWal, early.cursor));
  assert.equal(tail.stop, 'end');
  assert.deepEqual(tail.commits, full.commits.slice(early.commits.length));
  assert.deepEqual(tail.cursor, full.cursor);
  assertCommitsMatchFile(lateWal, tail.commits, early.cursor.frame);

  const none = ok(await scanWal(lateWal, full.cursor));
  assert.equal(none.stop, 'end');
  assert.equal(none.commits.length, 0);
  assert.deepEqual(none.cursor, full.cursor);

  // A cursor at the header (frame 0) is the same as no cursor.
  assert.deepEqual(ok(await scanWal(lateWal, cursorAtHeader(full.header))).commits, full.commits);
});

test('maxFrames bounds one call at a commit boundary with stop "limit"; repeated calls add up to a full scan', async (t) => {
  const lab = openLab(t);
  for (let i = 0; i < 6; i++) lab.insertTx(2, 3000);
  const wal = lab.copyWal('w');
  const full = ok(await scanWal(wal, null));
  const got: WalCommit[] = [];
  let cursor: WalCursor | null = null;
  let calls = 0;
  for (;;) {
    const r = ok(await scanWal(wal, cursor, { maxFrames: 3 }));
    calls++;
    got.push(...r.commits);
    cursor = r.cursor;
    assert.ok(r.commits.length > 0 || r.stop === 'end', 'every limited call makes progress');
    if (r.stop !== 'limit') {
      assert.equal(r.stop, 'end');
      break;
    }
  }
  assert.deepEqual(got, full.commits);
  assert.deepEqual(cursor, full.cursor);
  assert.ok(calls > 2);
});

test('a torn last frame stops at the previous commit with "torn-frame" (sqlite3 recovers the same state)', async (t) => {
  const lab = openLab(t);
  lab.insertTx(3, 3000);
  const rowsBefore = lab.rows();
  const sizeBefore = lab.db.pragma('page_count', { simple: true }) as number;
  lab.insertTx(2, 3000);
  const pair = lab.copyPair('pair.db');
  const full = ok(await scanWal(`${pair}-wal`, null));
  const lastFrame = full.commits.at(-1)!.lastFrame;
  truncateSync(`${pair}-wal`, frameOffset(lastFrame, 4096) + WAL_FRAME_HEADER_SIZE + 100);

  const r = ok(await scanWal(`${pair}-wal`, null));
  assert.equal(r.stop, 'torn-frame');
  assert.deepEqual(r.commits, full.commits.slice(0, -1));
  assert.equal(r.cursor.frame, full.commits.at(-2)!.lastFrame);
  assert.equal(Number(sqlite3(pair, 'SELECT count(*) FROM t')), rowsBefore);
  assert.equal(r.commits.at(-1)!.dbSizePages, sizeBefore);
});

test('a flipped byte in page data stops with "checksum-mismatch" and keeps only the commits before it', async (t) => {
  const lab = openLab(t);
  for (let i = 0; i < 5; i++) lab.insertTx(2, 2500);
  const wal = lab.copyWal('w');
  const full = ok(await scanWal(wal, null));
  const victim = full.commits[3]!;
  // Corrupt the middle frame of commit 3, so the frames before it in that transaction are valid but uncommitted.
  const frame = victim.firstFrame + Math.floor((victim.lastFrame - victim.firstFrame) / 2);
  flipByte(wal, frameOffset(frame, 4096) + WAL_FRAME_HEADER_SIZE + 1234);
  const r = ok(await scanWal(wal, null));
  assert.equal(r.stop, 'checksum-mismatch');
  assert.deepEqual(r.commits, full.commits.slice(0, 3));
  assert.equal(r.cursor.frame, full.commits[2]!.lastFrame);
  assert.deepEqual(r.cursor, ok(await scanWal(lab.copyWal('ref'), null, { maxFrames: full.commits[2]!.lastFrame })).cursor);

  // A corrupted stored checksum or frame-header byte is caught the same way.
  const wal2 = lab.copyWal('w2');
  flipByte(wal2, frameOffset(full.commits[1]!.lastFrame, 4096) + 4);
  assert.deepEqual(ok(await scanWal(wal2, null)).commits, full.commits.slice(0, 1));
  const wal3 = lab.copyWal('w3');
  flipByte(wal3, frameOffset(full.commits[1]!.lastFrame, 4096) + 21);
  const r3 = ok(await scanWal(wal3, null));
  assert.equal(r3.stop, 'checksum-mismatch');
  assert.deepEqual(r3.commits, full.commits.slice(0, 1));
});

test('a restarted WAL gives "header-changed" from an old cursor and "salt-mismatch" at leftover frames', async (t) => {
  const lab = openLab(t);
  for (let i = 0; i < 4; i++) lab.insertTx(3, 3000);
  const old = ok(await scanWal(lab.copyWal('old'), null));
  // A full PASSIVE checkpoint with no readers lets the next writer restart the WAL from frame 1 with new salts.
  const [ckpt] = lab.db.pragma('wal_checkpoint(PASSIVE)') as { busy: number; log: number; checkpointed: number }[];
  assert.equal(ckpt!.checkpointed, ckpt!.log);
  lab.insertTx(1, 10);
  const pair = lab.copyPair('pair.db');
  const restarted = `${pair}-wal`;

  const changed = await scanWal(restarted, old.cursor);
  assert.equal(changed.kind, 'header-changed');
  assert.ok(changed.kind === 'header-changed' && changed.header.salt1 !== old.header.salt1);
  assert.equal(await verifyWalPrefix(restarted, old.cursor), false);

  const fresh = ok(await scanWal(restarted, null));
  assert.equal(fresh.commits.length, 1);
  assert.equal(fresh.stop, 'salt-mismatch');
  assert.notEqual(fresh.header.salt1, old.header.salt1);
  assert.equal(Number(sqlite3(pair, 'PRAGMA page_count')), fresh.commits[0]!.dbSizePages);
  assert.equal(Number(sqlite3(pair, 'SELECT count(*) FROM t')), 13);
});

test('a frame with foreign salts mid-file stops with "salt-mismatch"', async (t) => {
  const lab = openLab(t);
  for (let i = 0; i < 4; i++) lab.insertTx(2, 2000);
  const wal = lab.copyWal('w');
  const full = ok(await scanWal(wal, null));
  // Salts are outside the checksum, so only the salt comparison can catch this frame.
  writeU32(wal, frameOffset(full.commits[2]!.firstFrame, 4096) + 12, full.header.salt2 ^ 1);
  const r = ok(await scanWal(wal, null));
  assert.equal(r.stop, 'salt-mismatch');
  assert.deepEqual(r.commits, full.commits.slice(0, 2));
});

test('frames of a spilled, still-open transaction are an "uncommitted-tail"; after COMMIT they are one big commit', async (t) => {
  const lab = openLab(t);
  lab.insertTx(2, 1000);
  const committed = ok(await scanWal(lab.copyWal('before'), null));
  const rowsBefore = lab.rows();

  lab.db.pragma('cache_size=10');
  lab.db.exec('BEGIN');
  const ins = lab.db.prepare('INSERT INTO t(v) VALUES (?)');
  for (let i = 0; i < 150; i++) ins.run(randomBytes(40_000)); // ~6 MB: spills to the WAL, spans several 4 MiB chunks
  const pair = lab.copyPair('open.db');
  lab.db.exec('COMMIT');

  const open = ok(await scanWal(`${pair}-wal`, null));
  assert.equal(open.stop, 'uncommitted-tail');
  assert.deepEqual(open.commits, committed.commits);
  assert.deepEqual(open.cursor, committed.cursor);
  assert.ok(readFileSync(`${pair}-wal`).length > frameOffset(open.cursor.frame + 100, 4096), 'the spill wrote frames past the cursor');
  assert.equal(Number(sqlite3(pair, 'SELECT count(*) FROM t')), rowsBefore);

  const afterWal = lab.copyWal('after');
  const after = ok(await scanWal(afterWal, open.cursor));
  assert.equal(after.stop, 'end');
  assert.equal(after.commits.length, 1);
  const big = after.commits[0]!;
  // More frames than one 4 MiB read chunk holds (4194304 / 4120 = 1018), so the scan crossed chunks inside it.
  assert.ok(big.lastFrame - big.firstFrame + 1 > 1018, `big transaction has ${big.lastFrame - big.firstFrame + 1} frames`);
  // SQLite overwrites frames of the open transaction in place when it re-spills a page, so pages
  // need not repeat here; what matters is that pgnos match the frames on disk.
  assertCommitsMatchFile(afterWal, after.commits, open.cursor.frame);

  // Damage deep in the second read chunk is still caught (chunks are verified, not just read).
  for (const frame of [big.firstFrame + 1018, big.lastFrame - 3]) {
    const damaged = lab.copyWal(`damaged-${frame}`);
    flipByte(damaged, frameOffset(frame, 4096) + WAL_FRAME_HEADER_SIZE + 4000);
    const d = ok(await scanWal(damaged, open.cursor));
    assert.equal(d.stop, 'checksum-mismatch');
    assert.equal(d.commits.length, 0);
  }
  assert.equal(big.dbSizePages, lab.db.pragma('page_count', { simple: true }));
});

test('a WAL with big-endian checksums verifies (synthesized, and a real WAL re-encoded that sqlite3 accepts)', async (t) => {
  const pageSize = 1024;
  const frames: WalFrameInput[] = [];
  for (let tx = 0; tx < 4; tx++) {
    for (let p = 1; p <= 3; p++) frames.push({ pgno: p + tx, dbSizePages: p === 3 ? 3 + tx : 0, page: randomBytes(pageSize) });
  }
  const lab = openLab(t);
  const synth = join(lab.dir, 'be.wal');
  writeFileSync(synth, encodeWal({ bigEndian: true, formatVersion: WAL_FORMAT_VERSION, pageSize, checkpointSeq: 0, salt1: 0x11111111, salt2: 0x22222222 }, frames));
  const r = ok(await scanWal(synth, null));
  assert.equal(r.header.bigEndian, true);
  assert.equal(r.stop, 'end');
  assert.deepEqual(r.commits.map((c) => [c.firstFrame, c.lastFrame, c.dbSizePages, [...c.pgnos]]), [
    [1, 3, 3, [1, 2, 3]],
    [4, 6, 4, [2, 3, 4]],
    [7, 9, 5, [3, 4, 5]],
    [10, 12, 6, [4, 5, 6]],
  ]);
  assert.equal(await verifyWalPrefix(synth, r.cursor), true);
  flipByte(synth, frameOffset(8, pageSize) + 100);
  assert.equal(ok(await scanWal(synth, null)).commits.length, 2);

  for (let i = 0; i < 3; i++) lab.insertTx(2, 3000);
  const pair = lab.copyPair('be.db');
  const le = ok(await scanWal(`${pair}-wal`, null));
  reencodeWal(`${pair}-wal`, `${pair}-wal`, true);
  const be = ok(await scanWal(`${pair}-wal`, null));
  assert.equal(be.header.bigEndian, true);
  // The same transactions; the running checksums differ with the byte order, as they must.
  const shape = (cs: readonly WalCommit[]): unknown[] => cs.map((c) => [c.firstFrame, c.lastFrame, c.dbSizePages, [...c.pgnos]]);
  assert.deepEqual(shape(be.commits), shape(le.commits));
  assert.notEqual(be.cursor.checksum1, le.cursor.checksum1);
  // SQLite's own recovery accepts our big-endian chain, so it is the same algorithm.
  assert.equal(Number(sqlite3(pair, 'SELECT count(*) FROM t')), lab.rows());
});

test('missing, empty and too-short files are "no-wal"; garbage is "invalid-header"', async (t) => {
  const lab = openLab(t);
  assert.deepEqual(await scanWal(join(lab.dir, 'nope-wal'), null), { kind: 'no-wal' });
  const empty = join(lab.dir, 'empty-wal');
  writeFileSync(empty, '');
  assert.deepEqual(await scanWal(empty, null), { kind: 'no-wal' });
  writeFileSync(empty, randomBytes(31));
  assert.deepEqual(await scanWal(empty, null), { kind: 'no-wal' });
  const junk = join(lab.dir, 'junk-wal');
  writeFileSync(junk, randomBytes(8192));
  assert.deepEqual(await scanWal(junk, null), { kind: 'invalid-header' });
  assert.equal(await verifyWalPrefix(join(lab.dir, 'nope-wal'), { salt1: 1, salt2: 2, pageSize: 4096, bigEndian: false, frame: 0, checksum1: 0, checksum2: 0 }), false);
});

test('a header with no frames scans as ok with no commits', async (t) => {
  const lab = openLab(t);
  const h = { bigEndian: false, formatVersion: WAL_FORMAT_VERSION, pageSize: 4096, checkpointSeq: 0, salt1: 9, salt2: 10 };
  const p = join(lab.dir, 'hdr-wal');
  writeFileSync(p, encodeWal(h, []));
  const r = ok(await scanWal(p, null));
  assert.equal(r.stop, 'end');
  assert.equal(r.commits.length, 0);
  assert.deepEqual(r.cursor, cursorAtHeader(r.header));
  assert.equal(await verifyWalPrefix(p, r.cursor), true);
});

test('verifyWalPrefix is true for an intact prefix of a longer WAL and false after any change to it', async (t) => {
  const lab = openLab(t);
  lab.insertTx(2, 3000);
  lab.insertTx(2, 3000);
  const early = ok(await scanWal(lab.copyWal('early'), null));
  lab.insertTx(3, 3000);
  const late = lab.copyWal('late');
  assert.equal(await verifyWalPrefix(late, early.cursor), true);
  assert.equal(await verifyWalPrefix(late, cursorAtHeader(early.header)), true);

  const midCommit = early.commits[1]!;
  assert.equal(await verifyWalPrefix(late, { ...early.cursor, frame: midCommit.lastFrame }), false, 'right frame count, wrong checksum');
  assert.equal(await verifyWalPrefix(late, { ...early.cursor, checksum2: early.cursor.checksum2 ^ 1 }), false);
  assert.equal(await verifyWalPrefix(late, { ...early.cursor, salt1: early.cursor.salt1 + 1 }), false);
  assert.equal(await verifyWalPrefix(late, { ...early.cursor, frame: midCommit.lastFrame - 1 }), false, 'not a commit frame');

  const flipped = lab.copyWal('flipped');
  flipByte(flipped, frameOffset(2, 4096) + 500);
  assert.equal(await verifyWalPrefix(flipped, early.cursor), false);
  const short = lab.copyWal('short');
  truncateSync(short, frameOffset(early.cursor.frame, 4096) + 10);
  assert.equal(await verifyWalPrefix(short, early.cursor), false);
  // A change after the prefix does not matter to it.
  const after = lab.copyWal('after');
  flipByte(after, frameOffset(early.cursor.frame + 1, 4096) + 500);
  assert.equal(await verifyWalPrefix(after, early.cursor), true);
});

test('scanning from a cursor the file no longer backs does not invent commits', async (t) => {
  const lab = openLab(t);
  lab.insertTx(2, 3000);
  lab.insertTx(2, 3000);
  const wal = lab.copyWal('w');
  const full = ok(await scanWal(wal, null));
  const mid = { ...full.cursor, frame: full.commits[1]!.lastFrame, checksum1: full.commits[1]!.lastFrame, checksum2: 0 };
  const wrong = ok(await scanWal(wal, mid));
  assert.equal(wrong.stop, 'checksum-mismatch');
  assert.equal(wrong.commits.length, 0);
  assert.deepEqual(wrong.cursor, mid);

  const short = lab.copyWal('short');
  truncateSync(short, frameOffset(full.cursor.frame - 1, 4096));
  const gone = ok(await scanWal(short, full.cursor));
  assert.equal(gone.stop, 'torn-frame');
  assert.equal(gone.commits.length, 0);

  const hdrOnly = ok(await scanWal(wal, { ...cursorAtHeader(full.header), checksum1: 1 }));
  assert.equal(hdrOnly.stop, 'checksum-mismatch');
  assert.equal(hdrOnly.commits.length, 0);
});

test('real WALs with page sizes 512 and 65536 scan and match sqlite3', async (t) => {
  for (const pageSize of [512, 65536]) {
    const lab = openLab(t, { pageSize });
    for (let i = 0; i < 3; i++) lab.insertTx(4, 9000);
    const pair = lab.copyPair('pair.db');
    const r = ok(await scanWal(`${pair}-wal`, null));
    assert.equal(r.header.pageSize, pageSize);
    assert.equal(r.stop, 'end');
    assert.equal(r.commits.length, 4);
    assertCommitsMatchFile(`${pair}-wal`, r.commits, 0);
    assert.equal(Number(sqlite3(pair, 'PRAGMA page_count')), r.commits.at(-1)!.dbSizePages);
  }
});

test('an aborted signal rejects with PitrError ABORTED', async (t) => {
  const lab = openLab(t);
  lab.insertTx(1, 10);
  const wal = lab.copyWal('w');
  const ac = new AbortController();
  ac.abort();
  await assert.rejects(scanWal(wal, null, { signal: ac.signal }), (err) => isPitrError(err, 'ABORTED'));
});

test('I/O errors other than ENOENT are PitrErrors', async (t) => {
  const lab = openLab(t);
  await assert.rejects(scanWal(lab.dir, null), (err) => isPitrError(err, 'WAL_INVALID'));
  await assert.rejects(verifyWalPrefix(lab.dir, cursorAtHeader({ bigEndian: false, formatVersion: WAL_FORMAT_VERSION, pageSize: 4096, checkpointSeq: 0, salt1: 1, salt2: 2, checksum1: 0, checksum2: 0 })), (err) => isPitrError(err, 'WAL_INVALID'));
});
