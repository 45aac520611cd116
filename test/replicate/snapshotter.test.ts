/**
 * The agent's snapshot writer over a real database: the image it spools is the database at the
 * captured txid, and it reports its progress in pages as it reads them (the agent logs that for
 * long snapshots). Real SQLite connections in this process stand in for the app.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { readSnapshot } from '../../src/segment/index.js';
import { writeSnapshotToSpool } from '../../src/replicate/snapshotter.js';
import { captureLabPerBlock } from './capture-lab.js';

describe('snapshot writer', () => {
  const labs = captureLabPerBlock('snapshotter');

  it('spools every page of the captured state and reports the pages read, in order, up to the last', async () => {
    const lab = await labs.open('CREATE TABLE t (k INTEGER PRIMARY KEY, v BLOB)');
    const { app, capture, src, spool, spoolDir, dbPath } = lab;
    // ~3 MB of rows: several 1 MiB chunks of pages, some still only in the WAL.
    const ins = app.prepare('INSERT INTO t (k, v) VALUES (?, ?)');
    app.transaction(() => {
      for (let i = 0; i < 700; i++) ins.run(i, randomBytes(4000));
    })();
    assert.equal((await capture.pass()).transactions, 1);

    const pin = src.pinRead();
    const view = capture.snapshotView();
    const seen: number[] = [];
    const entry = await writeSnapshotToSpool({ dbPath, view, pin, spool, onPages: (done) => seen.push(done) });
    assert.ok(seen.length >= 3, `progress reported ${seen.length} times`);
    assert.ok(seen.every((d, i) => i === 0 || d > (seen[i - 1] as number)), 'only forward');
    assert.equal(seen[seen.length - 1], view.dbSizePages);

    let pages = 0;
    const header = await readSnapshot(createReadStream(join(spoolDir, entry.key)), (_first, data) => void (pages += data.length / view.pageSize));
    assert.equal(header.txid, view.txid);
    assert.equal(pages, view.dbSizePages);
  });
});
