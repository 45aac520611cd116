/**
 * Shared by the catch-up tests (issue 20: no gaps across restarts): the app played by the sqlite3
 * shell, keeping its own record of what it committed; the replica's objects by kind; the agent's
 * log lines about generations and catch-up steps; restores checked against the app's record.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { parseObjectKey, type ObjectName } from '../../src/segment/object-names.js';
import { readSeq } from '../fixtures/app-schema.js';
import { digestDatabase } from '../fixtures/digest.js';
import {
  agentLogEntries,
  inspectDatabase,
  listFilesRecursive,
  runCli,
  runCliJson,
  waitUntil,
  type AgentLogEntry,
  type DatabaseState,
  type RestoreOutput,
} from './helpers.js';

/** Runs the sqlite3 shell on `db` (a process of its own, which closes the database on exit). */
export function sqlite3(db: string, sql: string): string {
  return execFileSync('sqlite3', [db, sql], { stdio: ['ignore', 'pipe', 'pipe'] }).toString().trim();
}

export function digestOf(path: string): string {
  const db = new Database(path, { readonly: true, fileMustExist: true });
  try {
    return digestDatabase(db);
  } finally {
    db.close();
  }
}

/**
 * The app, one sqlite3 process per commit: each commit bumps meta.seq (the app's commit counter)
 * and the app records the database's digest at that seq, so a restored database is checked by
 * the seq it holds. Several databases may share one record when their seqs never overlap.
 */
export class ShellApp {
  private constructor(
    readonly db: string,
    readonly record: Map<number, string>,
    private current: number,
  ) {}

  /** Creates the database (WAL mode, meta.seq = `seq`, `rows` rows in t) and records it. */
  static create(db: string, record: Map<number, string>, opts: { seq?: number; rows?: number } = {}): ShellApp {
    const seq = opts.seq ?? 0;
    const rows = opts.rows ?? 0;
    const fill =
      rows > 0
        ? `WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ${rows}) ` +
          `INSERT INTO t (k, v) SELECT ${seq * 100_000} + i, randomblob(500 + (i * 37) % 2500) FROM n;`
        : '';
    sqlite3(
      db,
      'PRAGMA journal_mode=WAL; ' +
        'CREATE TABLE meta (id INTEGER PRIMARY KEY, seq INTEGER NOT NULL); ' +
        'CREATE TABLE t (k INTEGER PRIMARY KEY, v BLOB NOT NULL); ' +
        `BEGIN; INSERT INTO meta VALUES (1, ${seq}); ${fill} COMMIT;`,
    );
    const app = new ShellApp(db, record, seq);
    app.note();
    return app;
  }

  /** The app carrying on with an existing database: it must hold `seq`, with the content recorded for it if any. */
  static attach(db: string, record: Map<number, string>, seq: number): ShellApp {
    const app = new ShellApp(db, record, seq);
    app.note();
    return app;
  }

  get seq(): number {
    return this.current;
  }

  /** One app transaction (its own sqlite3 process): `body` plus meta.seq + 1. Returns the new seq. */
  commit(body: string): number {
    sqlite3(this.db, `BEGIN IMMEDIATE; UPDATE meta SET seq = seq + 1 WHERE id = 1; ${body} COMMIT;`);
    this.current++;
    this.note();
    return this.current;
  }

  /** A commit adding `rows` rows (the next keys) with random blobs of sizes that vary. */
  insert(rows = 1): number {
    const size = 800 + (((this.current + 1) * 7919) % 3000);
    return this.commit(
      `WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ${rows}) ` +
        `INSERT INTO t (k, v) SELECT (SELECT coalesce(max(k), 0) FROM t) + i, randomblob(${size} + (i * 37) % 700) FROM n;`,
    );
  }

  /** The database's digest now, which must be what the record says for its seq. */
  digest(): string {
    const d = this.record.get(this.current);
    assert.ok(d !== undefined);
    return d;
  }

  /** Records the digest at the current seq; a seq recorded twice must not change (VACUUM keeps content). */
  note(): void {
    // Read-write, like the app's own connections: a read-only one would leave an empty -wal behind
    // when it is the last to close, where the app's last close removes it.
    const conn = new Database(this.db, { fileMustExist: true });
    let state: { seq: number; digest: string };
    try {
      state = { seq: readSeq(conn), digest: digestDatabase(conn) };
    } finally {
      conn.close();
    }
    assert.equal(state.seq, this.current, `${this.db} holds seq ${state.seq}, the app counted ${this.current}`);
    const prev = this.record.get(state.seq);
    if (prev !== undefined) assert.equal(state.digest, prev, `${this.db}: seq ${state.seq} changed content without a commit`);
    this.record.set(state.seq, state.digest);
  }
}

/** What the agent said about generations and catch-up steps (the log lines issue 20 promises). */
export interface GenerationEvents {
  newGenerations: AgentLogEntry[];
  continuing: AgentLogEntry[];
  catchUps: AgentLogEntry[];
}

export function generationEvents(stderr: string): GenerationEvents {
  const lines = agentLogEntries(stderr);
  return {
    newGenerations: lines.filter((l) => l.msg === 'starting a new generation'),
    continuing: lines.filter((l) => l.msg === 'continuing generation'),
    catchUps: lines.filter((l) => l.msg.startsWith('catch-up step')),
  };
}

/** The generation and catch-up lines, one per line, for assertion messages. */
export function describeEvents(e: GenerationEvents): string {
  const all = [...e.newGenerations, ...e.continuing, ...e.catchUps].sort((a, b) => String(a.time).localeCompare(String(b.time)));
  return all.length === 0 ? '  (no generation or catch-up line)' : all.map((l) => `  ${JSON.stringify(l)}`).join('\n');
}

/** The same lines as test diagnostics (one each: a diagnostic shows newlines escaped). */
export function diagnoseEvents(t: { diagnostic(message: string): void }, what: string, e: GenerationEvents): void {
  t.diagnostic(`${what}:`);
  for (const line of describeEvents(e).split('\n')) t.diagnostic(line);
}

export type SnapshotObject = Extract<ObjectName, { kind: 'snapshot' }> & { key: string };
export type SegmentObject = Extract<ObjectName, { kind: 'segment' }> & { key: string };

export interface ReplicaObjects {
  snapshots: SnapshotObject[];
  segments: SegmentObject[];
  catchUps: SegmentObject[];
}

/** The objects of a directory replica, parsed from their keys. */
export function replicaObjects(replicaDir: string): ReplicaObjects {
  const out: ReplicaObjects = { snapshots: [], segments: [], catchUps: [] };
  for (const key of listFilesRecursive(replicaDir)) {
    const name = parseObjectKey(key);
    if (name === null) continue;
    if (name.kind === 'snapshot') out.snapshots.push({ ...name, key });
    else {
      out.segments.push({ ...name, key });
      if (name.catchUp) out.catchUps.push({ ...name, key });
    }
  }
  return out;
}

export interface Restored {
  result: RestoreOutput;
  state: DatabaseState;
  path: string;
}

let outCounter = 0;

/** `pitr restore replica -o <fresh file in outDir> ...target --json`; the output must pass integrity_check. */
export async function restoreChecked(replica: string, outDir: string, target: readonly string[]): Promise<Restored> {
  const path = join(outDir, `r${outCounter++}.db`);
  const result = await runCliJson<RestoreOutput>(['restore', replica, '-o', path, ...target, '--json', '--no-progress']);
  const state = inspectDatabase(path);
  assert.equal(state.integrity, 'ok', `restore ${target.join(' ') || 'latest'}: integrity_check says ${state.integrity}`);
  return { result, state, path };
}

/** Restored content against the app's record: the seq it holds was committed, with exactly this content. */
export function matchesRecord(record: ReadonlyMap<number, string>, r: Restored): string | undefined {
  const want = record.get(r.state.seq);
  if (want === undefined) return `txid ${r.result.txid} restored seq ${r.state.seq}, which the app never committed`;
  if (want !== r.state.digest) return `txid ${r.result.txid} (seq ${r.state.seq}): content differs from the app's at that commit`;
  return undefined;
}

/** Waits until the replica's latest restore is `digest` (the app's state now); returns that restore's txid. */
export async function waitReplicaHolds(replica: string, outDir: string, digest: string, what: string, timeoutMs = 60_000): Promise<number> {
  return waitUntil(
    `the replica to hold ${what}`,
    async () => {
      const path = join(outDir, `probe-${outCounter++}.db`);
      const r = await runCli(['restore', replica, '-o', path, '--json', '--no-progress']);
      if (r.code !== 0) return undefined;
      return digestOf(path) === digest ? (JSON.parse(r.stdout) as RestoreOutput).txid : undefined;
    },
    { timeoutMs, intervalMs: 300 },
  );
}

/** Integers first..last inclusive. */
export function range(first: number, last: number): number[] {
  const out: number[] = [];
  for (let i = first; i <= last; i++) out.push(i);
  return out;
}
