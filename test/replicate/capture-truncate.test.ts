/**
 * The quiet-moment TRUNCATE must not run while the app is inside a transaction. A large
 * transaction spills pages into the WAL long before it commits, so the WAL is big and no commit
 * arrives: it looks quiet. A TRUNCATE attempt then drops pitr's reader for the length of its busy
 * wait, and if the commit lands in that window, the app's auto-checkpoint and the TRUNCATE can
 * erase the transaction's frames before pitr reads them (a broken generation; seen with a 300 MB
 * transaction against the real agent). Real SQLite connections in this process stand in for the app.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { statSync } from 'node:fs';
import { describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { QUIET_MS } from '../../src/replicate/capture.js';
import { captureLabPerBlock } from './capture-lab.js';

const TRUNCATE_BYTES = 256 * 1024;

describe('TRUNCATE in a quiet moment', () => {
  const labs = captureLabPerBlock('capture-truncate');

  it('is not tried while a transaction has spilled into the WAL, and is once it committed', async () => {
    const lab = await labs.open('CREATE TABLE t (k INTEGER PRIMARY KEY, v BLOB)', { truncateBytes: TRUNCATE_BYTES });
    const { app, capture, dbPath, startTxid } = lab;
    const wal = `${dbPath}-wal`;
    // A cache of a few pages makes the transaction write its pages into the WAL as it goes.
    app.pragma('cache_size = 8');
    const ins = app.prepare('INSERT INTO t (k, v) VALUES (?, ?)');
    app.exec('BEGIN');
    for (let i = 0; i < 500; i++) ins.run(i, randomBytes(4000));
    assert.ok(statSync(wal).size >= TRUNCATE_BYTES, `the open transaction spilled ${statSync(wal).size} bytes into the WAL`);

    await sleep(QUIET_MS + 50);
    const during = await capture.pass();
    assert.equal(during.broken, undefined);
    assert.equal(during.transactions, 0);
    assert.equal(during.checkpoint, undefined, 'no checkpoint was tried while the app was writing');
    assert.ok(statSync(wal).size >= TRUNCATE_BYTES);

    app.exec('COMMIT');
    const committed = await capture.pass();
    assert.equal(committed.broken, undefined);
    assert.equal(committed.transactions, 1);
    assert.equal(capture.state.lastTxid, startTxid + 1);

    // Quiet again, nothing in flight: now the WAL is truncated.
    await sleep(QUIET_MS + 50);
    const quiet = await capture.pass();
    assert.equal(quiet.broken, undefined);
    assert.equal(quiet.checkpoint?.mode, 'TRUNCATE');
    assert.equal(quiet.checkpoint?.busy, false);
    assert.equal(statSync(wal).size, 0);
  });
});
