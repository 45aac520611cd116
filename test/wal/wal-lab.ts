/**
 * Shared fixtures for the WAL tests: a real SQLite database in WAL mode in a temp dir, with helpers
 * to freeze copies of its WAL (and db+WAL pairs) at chosen moments. Not a test file itself.
 */
import { execFileSync } from 'node:child_process';
import { copyFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TestContext } from 'node:test';
import Database from 'better-sqlite3';
import { WAL_HEADER_SIZE, encodeWalFrame, encodeWalHeader, frameSize, parseWalFrameHeader, parseWalHeader } from '../../src/wal/wal-format.js';

export interface WalLab {
  dir: string;
  dbPath: string;
  walPath: string;
  db: Database.Database;
  /** Copy the live WAL to `name` in the lab dir (the connection stays open, so SQLite keeps it). */
  copyWal(name: string): string;
  /** Copy db file and WAL as a pair `name` / `name-wal` that SQLite can open on its own. */
  copyPair(name: string): string;
  /** Insert `rows` rows of `bytes` random bytes each in one transaction; returns page_count after it. */
  insertTx(rows: number, bytes: number): number;
  /** Rows committed so far through insertTx. */
  rows(): number;
}

export function openLab(t: TestContext, opts: { pageSize?: number } = {}): WalLab {
  const dir = mkdtempSync(join(tmpdir(), 'pitr-wal-test-'));
  const dbPath = join(dir, 'app.db');
  const db = new Database(dbPath);
  db.pragma(`page_size=${opts.pageSize ?? 4096}`);
  db.pragma('journal_mode=WAL');
  db.pragma('wal_autocheckpoint=0');
  db.exec('CREATE TABLE t(id INTEGER PRIMARY KEY, v BLOB)');
  const ins = db.prepare('INSERT INTO t(v) VALUES (randomblob(?))');
  t.after(() => {
    db.close();
    rmSync(dir, { recursive: true, force: true });
  });
  const walPath = `${dbPath}-wal`;
  return {
    dir,
    dbPath,
    walPath,
    db,
    copyWal(name) {
      const p = join(dir, name);
      copyFileSync(walPath, p);
      return p;
    },
    copyPair(name) {
      const p = join(dir, name);
      copyFileSync(dbPath, p);
      copyFileSync(walPath, `${p}-wal`);
      return p;
    },
    insertTx(rows, bytes) {
      db.transaction(() => {
        for (let i = 0; i < rows; i++) ins.run(bytes);
      })();
      return db.pragma('page_count', { simple: true }) as number;
    },
    rows() {
      return (db.prepare('SELECT count(*) AS n FROM t').get() as { n: number }).n;
    },
  };
}

/** Run the sqlite3 CLI on a database file and return its trimmed output. */
export function sqlite3(dbPath: string, sql: string): string {
  return execFileSync('sqlite3', [dbPath, sql], { encoding: 'utf8' }).trim();
}

/** Flip one bit of the byte at `offset` in a file. */
export function flipByte(path: string, offset: number): void {
  const b = readFileSync(path);
  b[offset] = b[offset]! ^ 0x01;
  writeFileSync(path, b);
}

/** Overwrite 4 bytes big-endian at `offset` in a file. */
export function writeU32(path: string, offset: number, value: number): void {
  const b = readFileSync(path);
  b.writeUInt32BE(value >>> 0, offset);
  writeFileSync(path, b);
}

/** Re-encode a WAL file with the other checksum byte order (same salts, frames and pages). */
export function reencodeWal(src: string, dst: string, bigEndian: boolean): void {
  const buf = new Uint8Array(readFileSync(src));
  const h = parseWalHeader(buf);
  if (h === null) throw new Error(`${src} has no valid WAL header`);
  const nh = { ...h, bigEndian };
  const header = encodeWalHeader(nh);
  const ph = parseWalHeader(header)!;
  const chain = new Uint32Array([ph.checksum1, ph.checksum2]);
  const fsz = frameSize(h.pageSize);
  const out = new Uint8Array(buf.length);
  out.set(header, 0);
  let o = WAL_HEADER_SIZE;
  for (; o + fsz <= buf.length; o += fsz) {
    const f = parseWalFrameHeader(buf, o);
    out.set(encodeWalFrame(nh, chain, f.pgno, f.dbSizePages, buf.subarray(o + 24, o + fsz)), o);
  }
  writeFileSync(dst, out.subarray(0, o));
}
