import Database from 'better-sqlite3';

/** Monotonic time in µs (CLOCK_MONOTONIC via process.hrtime): comparable between processes on one machine. */
export function nowUs(): number {
  return Number(process.hrtime.bigint() / 1000n);
}

/** mulberry32: small, seedable, fast; every run writes the same kind of bytes. */
export class Prng {
  private s: number;
  constructor(seed: number) {
    this.s = (seed ^ 0x9e3779b9) >>> 0;
  }
  next(): number {
    this.s = (this.s + 0x6d2b79f5) | 0;
    let t = this.s;
    t = Math.imul(t ^ (t >>> 15), 1 | t);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }
  /** Integer in [0, n). */
  int(n: number): number {
    return Math.floor(this.next() * n);
  }
}

const WORDS = (
  'alpha bravo charlie delta echo foxtrot golf hotel india juliet kilo lima mike november oscar papa ' +
  'quebec romeo sierra tango uniform victor whiskey xray yankee zulu active pending shipped paid ' +
  'refunded berlin paris tokyo lagos austin oslo order invoice customer widget gadget account ' +
  'payment delivery warehouse return discount priority express standard note comment review'
).split(' ');

/**
 * About `bytes` characters of app-like text: random words and numbers, so it compresses like
 * real rows (2-4x with deflate), not like random bytes (1x) or repeated text (100x).
 */
export function textOf(rng: Prng, bytes: number): string {
  const parts: string[] = [];
  let len = 0;
  while (len < bytes) {
    const w = rng.next() < 0.2 ? String(rng.int(1_000_000)) : WORDS[rng.int(WORDS.length)]!;
    parts.push(w);
    len += w.length + 1;
  }
  return parts.join(' ').slice(0, bytes);
}

export const APP_SCHEMA = `
CREATE TABLE meta (id INTEGER PRIMARY KEY, k INTEGER NOT NULL);
INSERT INTO meta VALUES (1, 0);
CREATE TABLE items (id INTEGER PRIMARY KEY, email TEXT NOT NULL, status TEXT NOT NULL, amount INTEGER NOT NULL, note TEXT NOT NULL, updated INTEGER NOT NULL);
CREATE INDEX items_email ON items (email);
CREATE TABLE events (id INTEGER PRIMARY KEY, item_id INTEGER NOT NULL, kind TEXT NOT NULL, at INTEGER NOT NULL, body TEXT NOT NULL);
CREATE TABLE docs (id INTEGER PRIMARY KEY, k TEXT NOT NULL, body TEXT NOT NULL);
CREATE INDEX docs_k ON docs (k);
`;

/**
 * Create a WAL-mode app database with `items` rows (~260 B each with its index entry) and return
 * its size in bytes. The WAL is checkpointed and removed, so the file alone is the database.
 */
export function seedDatabase(path: string, items: number, seed = 1): number {
  const db = new Database(path);
  try {
    db.pragma('journal_mode = WAL');
    db.pragma('synchronous = OFF');
    db.exec(APP_SCHEMA);
    const rng = new Prng(seed);
    const ins = db.prepare('INSERT INTO items (email, status, amount, note, updated) VALUES (?, ?, ?, ?, ?)');
    const fill = db.transaction((from: number, to: number) => {
      for (let i = from; i < to; i++) {
        ins.run(`user${rng.int(10_000_000)}@example.com`, WORDS[rng.int(WORDS.length)], rng.int(1_000_000), textOf(rng, 150), 1_763_800_000_000 + i);
      }
    });
    for (let i = 0; i < items; i += 50_000) fill(i, Math.min(items, i + 50_000));
    db.pragma('wal_checkpoint(TRUNCATE)');
    const pages = db.pragma('page_count', { simple: true }) as number;
    const pageSize = db.pragma('page_size', { simple: true }) as number;
    return pages * pageSize;
  } finally {
    db.close();
  }
}

/** meta.k of a (restored) database: the number of the last app commit it holds. */
export function readK(path: string): number {
  const db = new Database(path, { readonly: true, fileMustExist: true });
  try {
    return db.prepare('SELECT k FROM meta WHERE id = 1').pluck().get() as number;
  } finally {
    db.close();
  }
}
