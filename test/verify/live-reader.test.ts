import { after, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { copyFileSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { isPitrError } from '../../src/errors.js';
import { checkLiveDatabase, readLive } from '../../src/verify/live-reader.js';

const dir = mkdtempSync(join(tmpdir(), 'pitr-live-reader-'));
after(() => rmSync(dir, { recursive: true, force: true }));

let n = 0;
/**
 * A database whose committed content is partly in its WAL, with no connection open on it: a copy
 * of the three files taken while the writer that made them was idle and still open, so no
 * checkpoint ran. The last connection to close on such a database would checkpoint it and
 * delete the WAL, if it could write.
 */
function walDatabase(): string {
  const src = join(dir, `src-${n}.db`);
  const w = new Database(src);
  w.pragma('journal_mode = WAL');
  w.pragma('wal_autocheckpoint = 0');
  w.exec('CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)');
  for (let i = 0; i < 50; i++) w.prepare('INSERT INTO t (v) VALUES (?)').run(`row ${i}`);
  const copy = join(dir, `live-${n++}.db`);
  for (const part of ['', '-wal', '-shm']) copyFileSync(`${src}${part}`, `${copy}${part}`);
  w.close();
  return copy;
}

function held(path: string): string[] {
  try {
    return readdirSync('/proc/self/fd')
      .map((fd) => {
        try {
          return readlinkSync(`/proc/self/fd/${fd}`);
        } catch {
          return '';
        }
      })
      .filter((t) => t.startsWith(path));
  } catch {
    return [];
  }
}

/** Put a copy of `path` in its place: same bytes, another file (what `cp backup x && mv` does). */
function replaceWithCopy(path: string): void {
  copyFileSync(path, `${path}.tmp`);
  renameSync(`${path}.tmp`, path);
}

describe('readLive', () => {
  it('only reads: no write goes through, the WAL is neither checkpointed nor removed, no descriptor stays', async () => {
    const db = walDatabase();
    const before = { main: readFileSync(db), wal: readFileSync(`${db}-wal`) };
    const r = await readLive(db, async (conn) => {
      assert.throws(() => conn.exec('CREATE TABLE x (y)'));
      return conn.prepare('SELECT count(*) FROM t').pluck().get();
    });
    assert.deepEqual(r, { ok: true, value: 50 });
    assert.deepEqual(readFileSync(db), before.main, 'the database file is untouched');
    assert.deepEqual(readFileSync(`${db}-wal`), before.wal, 'the WAL is still there, unchanged');
    assert.deepEqual(held(db), [], 'the connection is closed');
  });

  for (const part of ['-wal', '-shm', ''] as const) {
    it(`refuses what it read when the ${part || 'database'} file was replaced under it`, async () => {
      const db = walDatabase();
      const r = await readLive(db, async (conn) => {
        const count = conn.prepare('SELECT count(*) FROM t').pluck().get();
        replaceWithCopy(`${db}${part}`);
        return count;
      });
      assert.equal(r.ok, false);
      assert.match(r.ok ? '' : r.why, new RegExp(`${part === '' ? 'the database file' : `the ${part} file`} \\S+ was replaced`));
      assert.deepEqual(held(db), []);
    });
  }
});

describe('checkLiveDatabase', () => {
  it('names a missing path, a directory, an empty file and a file that is not SQLite', async () => {
    const cases: [string, string][] = [
      [join(dir, 'missing.db'), 'DB_NOT_FOUND'],
      [dir, 'DB_IS_DIRECTORY'],
      [join(dir, 'empty.db'), 'DB_OPEN_FAILED'],
      [join(dir, 'text.db'), 'DB_OPEN_FAILED'],
    ];
    writeFileSync(join(dir, 'empty.db'), '');
    writeFileSync(join(dir, 'text.db'), 'not a database, but long enough to have a header of one hundred bytes or more, ok?'.repeat(5));
    for (const [path, code] of cases) {
      await assert.rejects(checkLiveDatabase(path), (err: unknown) => isPitrError(err, code as 'DB_NOT_FOUND') && err.message.includes(path), path);
    }
    const db = walDatabase();
    await checkLiveDatabase(db);
    assert.deepEqual(held(db), []);
    assert.ok(statSync(`${db}-wal`).size > 0, 'the probe did not checkpoint either');
  });
});
