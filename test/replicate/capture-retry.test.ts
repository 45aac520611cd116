/**
 * A capture pass that fails part way (here the spool cannot be written: a real ENOTDIR, no mock)
 * must not lose the commits it had not spooled yet, even when the app checkpoints and writes on
 * before the spool heals. The danger: the failed pass had moved pitr's read mark past what was
 * spooled; had the retry moved it again, to a WAL the app had fully backfilled, the new reader
 * would use no WAL frame and no longer stop the app's next commit from restarting the WAL over
 * those frames. Real SQLite connections in this process stand in for the app.
 */
import assert from 'node:assert/strict';
import { unlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { captureLabPerBlock } from './capture-lab.js';

describe('capture after a failed pass', () => {
  const labs = captureLabPerBlock('capture-retry');

  it('catches up before it moves the read mark again, so no commit is lost', async () => {
    const lab = await labs.open('CREATE TABLE t (x TEXT)');
    const { app, capture, spoolDir, startTxid } = lab;

    app.exec("INSERT INTO t VALUES ('a')");
    const blocker = join(spoolDir, 'generations');
    writeFileSync(blocker, 'not a directory'); // every spool write now fails
    await assert.rejects(capture.pass());
    // The app checkpoints everything (pitr's mark is at the WAL's end) ...
    const ck = app.pragma('wal_checkpoint(PASSIVE)') as { busy: number; log: number; checkpointed: number }[];
    assert.equal(ck[0]!.checkpointed, ck[0]!.log);
    // ... pitr retries while the spool is still broken ...
    await assert.rejects(capture.pass());
    // ... and the app commits again, which would restart the WAL if pitr held no WAL frame.
    app.exec("INSERT INTO t VALUES ('b')");
    unlinkSync(blocker);

    const r = await capture.pass();
    assert.equal(r.broken, undefined);
    assert.equal(r.transactions, 2, 'both commits captured');
    assert.equal(capture.state.lastTxid, startTxid + 2);
  });
});
