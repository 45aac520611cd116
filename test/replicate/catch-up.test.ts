import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { copyFileSync, mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { Fingerprint } from '../../src/replicate/fingerprint/fingerprint.js';
import { catchUp } from '../../src/replicate/fingerprint/catch-up.js';
import { PageImage, type PageImageView } from '../../src/replicate/page-image.js';
import { Spool } from '../../src/replicate/spool.js';
import { openLocalStore } from '../../src/storage/local-store.js';
import { decodeSegment, iterateTransactions } from '../../src/segment/index.js';

const GEN = '0123456789abcdef';
const PAGE = 4096;

/** A WAL database of ~200 pages, checkpointed and closed (no -wal left). */
function makeDb(path: string): void {
  const db = new Database(path);
  db.pragma('journal_mode = WAL');
  db.exec('CREATE TABLE t(id INTEGER PRIMARY KEY, v BLOB)');
  const ins = db.prepare('INSERT INTO t(v) VALUES (?)');
  db.transaction(() => {
    for (let i = 0; i < 400; i++) ins.run(Buffer.alloc(1500, i & 0xff));
  })();
  db.close();
}

function change(path: string, sql: string): void {
  const db = new Database(path);
  db.exec(sql);
  db.pragma('wal_checkpoint(TRUNCATE)');
  db.close();
}

function fileView(path: string): PageImageView {
  const size = readFileSync(path).length;
  return { dbSizePages: size / PAGE, pageSize: PAGE, cursor: null, pageMap: new Map() };
}

/** A fingerprint of the file at `path` as of txid 7 (what capture would have). */
async function fingerprintOf(path: string, stateDir: string): Promise<Fingerprint> {
  const fp = await Fingerprint.start(stateDir, GEN, PAGE);
  const view = fileView(path);
  const base = fp.newBase();
  const image = await PageImage.open(path, view);
  try {
    for (let p = 1; p <= view.dbSizePages; p++) base.onPage(p, image.page(p));
  } finally {
    await image.close();
  }
  await base.finish(7, 1000, view.dbSizePages);
  return fp;
}

async function setup(): Promise<{ dir: string; db: string; spool: Spool; fp: Fingerprint; before: Buffer }> {
  const dir = mkdtempSync(join(tmpdir(), 'pitr-catchup-'));
  const db = join(dir, 'app.db');
  makeDb(db);
  const fp = await fingerprintOf(db, dir);
  return { dir, db, spool: new Spool(openLocalStore(join(dir, 'spool'))), fp, before: readFileSync(db) };
}

describe('catch-up step', () => {
  it('ships exactly the pages that changed and the new size; applied to the old file it gives the new one', async () => {
    const { db, spool, fp, before } = await setup();
    change(db, "UPDATE t SET v = randomblob(1500) WHERE id IN (3, 150, 399); DELETE FROM t WHERE id > 300; VACUUM;");
    const r = await catchUp({ dbPath: db, view: fileView(db), fp, spool, generation: GEN });
    assert.equal(r.kind, 'step');
    if (r.kind !== 'step') return;
    assert.equal(r.txid, 8);
    assert.equal(r.from, 1000);
    const entry = spool.segmentsOf(GEN)[0];
    assert.ok(entry?.catchUp && entry.key.endsWith('.catchup.seg'));
    // Apply the step to the old file the way restore does, and compare with the new file.
    const stored = await spool.readStored(entry);
    const decoded = await decodeSegment(stored.bytes, entry.key);
    assert.equal(decoded.header.catchUpFrom, 1000);
    const after = readFileSync(db);
    let image = Buffer.from(before);
    let txs = 0;
    for (const tx of iterateTransactions(decoded.body, PAGE)) {
      txs++;
      for (const { pgno, data } of tx.pages) {
        const end = pgno * PAGE;
        if (image.length < end) image = Buffer.concat([image, Buffer.alloc(end - image.length)]);
        image.set(data, (pgno - 1) * PAGE);
      }
      image = image.subarray(0, tx.dbSizePages * PAGE);
      assert.equal(tx.txid, 8);
    }
    assert.equal(txs, 1);
    assert.ok(image.equals(after), 'old file + step = new file');
    assert.ok(r.changed < r.pages + 1 && after.length < before.length, 'the file shrank');
    // The fingerprint now describes the new file: a second comparison finds nothing.
    const again = await catchUp({ dbPath: db, view: fileView(db), fp, spool, generation: GEN });
    assert.equal(again.kind, 'same');
    assert.equal(fp.txid, 8);
  });

  it('an unchanged database is "same" and spools nothing', async () => {
    const { db, spool, fp } = await setup();
    const r = await catchUp({ dbPath: db, view: fileView(db), fp, spool, generation: GEN });
    assert.equal(r.kind, 'same');
    assert.equal(spool.segmentsOf(GEN).length, 0);
    assert.equal(fp.txid, 7);
  });

  it('a difference larger than a step may hold is refused, spooling nothing', async () => {
    const { db, spool, fp } = await setup();
    change(db, 'UPDATE t SET v = randomblob(1500)');
    const r = await catchUp({ dbPath: db, view: fileView(db), fp, spool, generation: GEN, maxBytes: 64 << 10 });
    assert.equal(r.kind, 'too-large');
    assert.equal(spool.segmentsOf(GEN).length, 0);
    assert.equal(fp.txid, 7);
  });

  it('a file replaced by another database: the step is the whole difference', async () => {
    const { dir, db, spool, fp } = await setup();
    const other = join(dir, 'other.db');
    makeDb(other);
    change(other, "UPDATE t SET v = randomblob(1500) WHERE id % 2 = 0");
    copyFileSync(other, db);
    const r = await catchUp({ dbPath: db, view: fileView(db), fp, spool, generation: GEN });
    assert.equal(r.kind, 'step');
    if (r.kind === 'step') assert.ok(r.changed * 2 > r.pages, `${r.changed} of ${r.pages} pages changed`);
  });
});
