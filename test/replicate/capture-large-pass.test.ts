/**
 * A capture pass with more than one spool entry's worth of WAL (32 MiB) cuts it into several
 * entries, each built in the buffer the previous one used (SegmentBodyBuilder reuse). Every page
 * image of every transaction must still come out exactly as the WAL holds it, in WAL order, with
 * contiguous txids: a buffer handed on too early, or stale bytes past a body's end, would show
 * here. Real SQLite connections in this process stand in for the app.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { pathToFileURL } from 'node:url';
import Database from 'better-sqlite3';
import { SourceDb } from '../../src/db/source-db.js';
import { silentLogger } from '../../src/log.js';
import { Capture } from '../../src/replicate/capture.js';
import { Spool } from '../../src/replicate/spool.js';
import { decodeSegment, iterateTransactions } from '../../src/segment/index.js';
import { FileStorage } from '../../src/storage/file/file-storage.js';

describe('a capture pass larger than one spool entry', () => {
  let dir = '';
  let app: Database.Database;
  let src: SourceDb;

  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'pitr-capture-large-'));
  });

  after(() => {
    src?.close();
    app?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('spools several entries whose pages are exactly the WAL frames, in order', async () => {
    const dbPath = join(dir, 'app.db');
    const spoolDir = join(dir, 'spool');
    const stateDir = join(dir, 'state');
    mkdirSync(spoolDir);
    mkdirSync(stateDir);
    app = new Database(dbPath);
    app.pragma('journal_mode = WAL');
    app.pragma('wal_autocheckpoint = 0'); // every frame stays in the WAL, to compare against
    app.exec('CREATE TABLE t (k INTEGER PRIMARY KEY, v BLOB)');
    src = await SourceDb.open(dbPath);
    const spool = new Spool(new FileStorage(spoolDir, pathToFileURL(spoolDir).href));
    const { capture } = await Capture.start(
      src,
      spool,
      { dbPath, stateDir, checkpointFrames: 1e9, truncateBytes: 0, resetBytes: 0, log: silentLogger },
      null,
      0,
    );
    const startTxid = capture.state.lastTxid;
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
