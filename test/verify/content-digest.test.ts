import { after, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { contentDigest, describeDifference } from '../../src/verify/content-digest.js';

const dir = mkdtempSync(join(tmpdir(), 'pitr-digest-'));
after(() => rmSync(dir, { recursive: true, force: true }));

let n = 0;
function makeDb(extra = ''): Database.Database {
  const db = new Database(join(dir, `db-${n++}.db`));
  db.exec(`
    CREATE TABLE a (id INTEGER PRIMARY KEY, t TEXT, r REAL, b BLOB);
    CREATE TABLE kv (k TEXT PRIMARY KEY, v INTEGER) WITHOUT ROWID;
    CREATE TABLE plain (x, y);
    CREATE INDEX a_t ON a (t);
    INSERT INTO a (t, r, b) VALUES ('one', 0.1, x'00ff'), ('two', NULL, NULL), ('three', 3.0, x'');
    INSERT INTO kv VALUES ('z', 1), ('a', 9007199254740993);
    INSERT INTO plain VALUES (1, 'p'), (2, 'q');
    ${extra}
  `);
  return db;
}

describe('contentDigest', () => {
  it('is the same for the same content, whatever the page layout', () => {
    const x = makeDb();
    const y = makeDb('DELETE FROM a WHERE id > 100; VACUUM;');
    y.exec("INSERT INTO a (id, t, r, b) VALUES (500, 'gone', 1, NULL); DELETE FROM a WHERE id = 500;");
    assert.equal(describeDifference(contentDigest(x), contentDigest(y)), null);
    x.close();
    y.close();
  });

  it('names the parts that differ', () => {
    const base = contentDigest(makeDb());
    const cases: [string, string][] = [
      ["UPDATE a SET r = 0.1000000001 WHERE id = 1", 'table a differs'],
      ["UPDATE kv SET v = 9007199254740992 WHERE k = 'a'", 'table kv differs'], // beyond 2^53: exact integers
      ["UPDATE a SET b = x'00fe' WHERE id = 1", 'table a differs'],
      ['DELETE FROM plain WHERE x = 2', 'table plain differs'],
      ['CREATE TABLE extra (id INTEGER PRIMARY KEY)', 'schema differs, table extra only in the replica'],
      ['PRAGMA user_version = 7', 'header differs'],
    ];
    for (const [sql, want] of cases) {
      const other = makeDb(sql);
      assert.equal(describeDifference(base, contentDigest(other)), want, sql);
      other.close();
    }
  });

  it('uses the caller\'s read transaction when there is one', () => {
    const db = makeDb();
    db.exec('BEGIN');
    const d = contentDigest(db);
    assert.equal(db.inTransaction, true);
    db.exec('COMMIT');
    assert.equal(d.digest, contentDigest(db).digest);
    db.close();
  });
});
