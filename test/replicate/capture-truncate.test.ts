/**
 * The quiet-moment TRUNCATE can never erase a frame capture has not read.
 *
 * It must not run while the app is inside a transaction. A large
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
import { QUIET_MS } from '../../src/replicate/capture/capture.js';
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

describe('a commit inside the TRUNCATE', () => {
  const labs = captureLabPerBlock('capture-truncate-race');

  it('loses no commit that lands inside the TRUNCATE, even when the app checkpoints in every mode right then', async () => {
    const lab = await labs.open('CREATE TABLE t (k INTEGER PRIMARY KEY, v BLOB)', { truncateBytes: TRUNCATE_BYTES });
    const { app, src, capture, dbPath } = lab;
    const wal = `${dbPath}-wal`;
    const ins = app.prepare('INSERT INTO t (k, v) VALUES (?, ?)');
    for (let i = 0; i < 100; i++) ins.run(i, randomBytes(4000));
    assert.equal((await capture.pass()).transactions, 100);
    assert.ok(statSync(wal).size >= TRUNCATE_BYTES);
    const before = capture.state.lastTxid;

    // The worst moment, made certain instead of waited for: right before pitr's TRUNCATE
    // checkpoint, the app commits and then checkpoints in every mode (a real connection, real
    // locks). Had pitr let go of its read transaction there, the app's TRUNCATE would erase that
    // commit before capture read it.
    const real = src.checkpoint.bind(src);
    let raced = 0;
    src.checkpoint = (mode, busy) => {
      if (mode === 'TRUNCATE' && raced++ === 0) {
        ins.run(1000, randomBytes(4000));
        app.pragma('busy_timeout = 0');
        for (const m of ['PASSIVE', 'FULL', 'RESTART', 'TRUNCATE']) app.pragma(`wal_checkpoint(${m})`);
      }
      return real(mode, busy);
    };
    try {
      await sleep(QUIET_MS + 50);
      const quiet = await capture.pass();
      assert.equal(raced, 1, 'the TRUNCATE was tried');
      assert.equal(quiet.broken, undefined);
      assert.equal(quiet.checkpoint?.busy, true, 'the TRUNCATE gave way to the commit it had not captured');
      const next = await capture.pass();
      assert.equal(next.broken, undefined);
      assert.equal(next.transactions, 1, 'the commit that landed inside the TRUNCATE is captured');
      assert.equal(capture.state.lastTxid, before + 1);
    } finally {
      src.checkpoint = real;
    }
    // Quiet again with nothing uncaptured: now the TRUNCATE goes through.
    await sleep(QUIET_MS + 50);
    const later = await capture.pass();
    assert.equal(later.checkpoint?.mode, 'TRUNCATE');
    assert.equal(later.checkpoint?.busy, false);
    assert.equal(statSync(wal).size, 0);
  });
});
