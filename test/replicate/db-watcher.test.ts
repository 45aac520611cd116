import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { appendFileSync, mkdtempSync, rmSync, watch, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { DbWatcher } from '../../src/replicate/db-watcher.js';

async function until(what: string, ok: () => boolean): Promise<void> {
  for (let i = 0; i < 500; i++) {
    if (ok()) return;
    await sleep(10);
  }
  assert.fail(`waited 5 s for ${what}`);
}

describe('DbWatcher', () => {
  it('fires once per arming, for the database and its WAL only', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'pitr-watch-'));
    const db = join(dir, 'app.db');
    writeFileSync(db, 'x');
    let changes = 0;
    const errors: Error[] = [];
    const w = new DbWatcher(db, () => changes++, (e) => errors.push(e));
    try {
      w.arm();
      assert.ok(w.armed);
      // Other files in the directory do not count, and do not disarm it: once a second watcher
      // has seen their events, ours has had them too and must still be armed.
      let others = 0;
      const probe = watch(dir, (_e, name) => {
        if (name === 'other.txt' || name === 'app.db-shm') others++;
      });
      writeFileSync(join(dir, 'other.txt'), 'y');
      writeFileSync(`${db}-shm`, 'y');
      await until('the other files\' events', () => others >= 2);
      await sleep(50);
      probe.close();
      assert.equal(changes, 0, 'other files do not count');
      assert.ok(w.armed, 'other files do not disarm it');
      writeFileSync(`${db}-wal`, 'frame'); // created: ours
      await until('the first notice', () => changes === 1);
      assert.equal(w.armed, false, 'one event disarms it');
      appendFileSync(`${db}-wal`, 'more'); // while disarmed: the agent's stat comparison covers this
      w.arm();
      appendFileSync(db, 'page');
      await until('the notice after re-arming', () => changes === 2);
      assert.equal(w.armed, false);
      assert.deepEqual(errors, []);
    } finally {
      w.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('stays off after an error, leaving the work to the stat poll', () => {
    const errors: Error[] = [];
    const w = new DbWatcher(join(tmpdir(), 'pitr-no-such-dir', 'app.db'), () => {}, (e) => errors.push(e));
    w.arm();
    w.arm();
    assert.equal(errors.length, 1, 'reported once');
    assert.equal(w.armed, false);
    w.close();
  });
});
