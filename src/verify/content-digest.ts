import { createHash, type Hash } from 'node:crypto';
import type Database from 'better-sqlite3';

/** sha256 of what a database says, overall and per part (header, schema, each table). */
export interface ContentDigest {
  digest: string;
  parts: Map<string, string>;
}

/**
 * Digest the logical content: user_version, application_id, the schema (without root pages, which
 * VACUUM moves) and every row of every table in rowid order (primary-key order for WITHOUT ROWID).
 * Runs inside one read transaction (the caller's, or its own) so all parts come from one state.
 */
export function contentDigest(db: Database.Database): ContentDigest {
  const own = !db.inTransaction;
  if (own) db.exec('BEGIN');
  try {
    const parts = new Map<string, string>();
    let h = createHash('sha256');
    frameValue(h, BigInt(db.pragma('user_version', { simple: true }) as number));
    frameValue(h, BigInt(db.pragma('application_id', { simple: true }) as number));
    parts.set('header', h.digest('hex'));

    h = createHash('sha256');
    const schema = db.prepare('SELECT type, name, tbl_name, sql FROM sqlite_schema ORDER BY type, name').raw(true).safeIntegers(true);
    for (const row of schema.iterate() as Iterable<unknown[]>) {
      frameMarker(h, 'entry');
      for (const v of row) frameValue(h, v);
    }
    parts.set('schema', h.digest('hex'));

    const tables = (db.prepare("SELECT name, type, wr FROM pragma_table_list WHERE schema = 'main' AND type IN ('table', 'shadow')").all() as { name: string; wr: number }[])
      .filter((t) => t.name !== 'sqlite_schema' && t.name !== 'sqlite_master')
      // Byte order, not locale order: the digest must not depend on the machine's locale.
      .sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    for (const t of tables) {
      h = createHash('sha256');
      const stmt = db.prepare(`SELECT * FROM ${quoteIdent(t.name)} ORDER BY ${orderFor(db, t.name, t.wr === 1)}`).raw(true).safeIntegers(true);
      for (const c of stmt.columns()) frameValue(h, c.name);
      for (const row of stmt.iterate() as Iterable<unknown[]>) {
        frameMarker(h, 'row');
        for (const v of row) frameValue(h, v);
      }
      parts.set(`table ${t.name}`, h.digest('hex'));
    }
    const all = createHash('sha256');
    for (const [k, v] of parts) {
      frameValue(all, k);
      frameValue(all, v);
    }
    return { digest: all.digest('hex'), parts };
  } finally {
    if (own) db.exec('COMMIT');
  }
}

/** Row order that is the same in two copies of one database at one txid. */
function orderFor(db: Database.Database, table: string, withoutRowid: boolean): string {
  const cols = db.prepare('SELECT name, pk FROM pragma_table_info(?) ORDER BY cid').all(table) as { name: string; pk: number }[];
  if (withoutRowid) {
    return cols.filter((c) => c.pk > 0).sort((a, b) => a.pk - b.pk).map((c) => quoteIdent(c.name)).join(', ');
  }
  // A column may shadow "rowid"; SQLite keeps the rowid reachable under any unshadowed alias.
  const names = new Set(cols.map((c) => c.name.toLowerCase()));
  const alias = ['rowid', '_rowid_', 'oid'].find((a) => !names.has(a));
  return alias ?? cols.map((c) => quoteIdent(c.name)).join(', ');
}

/** What differs between two digests, or null when they are equal. */
export function describeDifference(live: ContentDigest, restored: ContentDigest): string | null {
  if (live.digest === restored.digest) return null;
  const names = new Set([...live.parts.keys(), ...restored.parts.keys()]);
  const out: string[] = [];
  for (const n of [...names].sort()) {
    const a = live.parts.get(n);
    const b = restored.parts.get(n);
    if (a === b) continue;
    out.push(a === undefined ? `${n} only in the replica` : b === undefined ? `${n} missing from the replica` : `${n} differs`);
  }
  return out.length > 0 ? out.join(', ') : 'digests differ';
}

function quoteIdent(name: string): string {
  return `"${name.replaceAll('"', '""')}"`;
}

// Every item is tag + u32 length + bytes, so no two different sequences hash the same input.
function frame(hash: Hash, tag: string, bytes: Uint8Array): void {
  const head = Buffer.alloc(5);
  head.write(tag, 0, 1, 'latin1');
  head.writeUInt32BE(bytes.length, 1);
  hash.update(head);
  hash.update(bytes);
}

function frameMarker(hash: Hash, name: string): void {
  frame(hash, 'M', Buffer.from(name, 'utf8'));
}

function frameValue(hash: Hash, v: unknown): void {
  if (v === null || v === undefined) frame(hash, 'N', Buffer.alloc(0));
  else if (typeof v === 'bigint') frame(hash, 'I', Buffer.from(v.toString(10), 'latin1'));
  else if (typeof v === 'number') {
    // With safeIntegers on, numbers are REALs only; all 64 bits, so 0.1 and 0.1000000001 differ.
    const b = Buffer.alloc(8);
    b.writeDoubleBE(v);
    frame(hash, 'R', b);
  } else if (typeof v === 'string') frame(hash, 'T', Buffer.from(v, 'utf8'));
  else if (v instanceof Uint8Array) frame(hash, 'B', v);
  else throw new TypeError(`contentDigest: unexpected value of type ${typeof v}`);
}
