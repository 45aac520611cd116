import { createHash, type Hash } from 'node:crypto';
import { mkdtemp, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import Database from 'better-sqlite3';
import { PitrError, isPitrError, type ErrorCode } from '../errors.js';
import { buildCatalog, latestState, maxTxid, type Catalog } from '../catalog/catalog.js';
import { describeHole, describeLost, describeMissingBase, describeOrphan } from '../catalog/describe.js';
import { readDbFileInfo } from '../db/db-file.js';
import { loadPosition, type Position } from '../replicate/capture/position.js';
import { planRestore, type RestoreTarget } from '../restore/plan.js';
import { loadReplica, type ReplicaView } from '../restore/replica-view.js';
import { restore } from '../restore/restore.js';
import { decodeSegment } from '../segment/index.js';
import { readSnapshot } from '../segment/index.js';
import { GENERATIONS_PREFIX } from '../segment/object-names.js';
import type { StorageClient } from '../storage/storage-client.js';
import { scanWal } from '../wal/wal-scan.js';

/** One thing that does not hold. `object` is the replica key when the problem is one object. */
export interface VerifyProblem {
  /** 'completeness': a hole, an orphaned segment, a missing base snapshot or generation (see catalog). */
  check: 'checksum' | 'read' | 'completeness' | 'restore' | 'integrity' | 'content';
  object?: string;
  message: string;
  /** The PitrError code behind it (OBJECT_CORRUPT, INTEGRITY_CHECK_FAILED, VERIFY_MISMATCH, ...). */
  code: ErrorCode | 'INTERNAL';
  hint?: string;
}

export interface VerifyResult {
  /** True only when every check that ran held (a skipped content comparison is not a failure). */
  ok: boolean;
  replica: string;
  /** Generation, txid and commit time the restore ended at (null/0 when it could not run). */
  generation: string | null;
  txid: number;
  commitTime: number;
  objectsChecked: number;
  bytesChecked: number;
  /** 'ok', or why the restore failed its integrity check, or 'skipped: ...' when no restore ran. */
  integrity: 'ok' | string;
  content: 'match' | 'mismatch' | 'skipped';
  /** Why the content was not compared, or at which txid it was. */
  contentNote?: string;
  /** The txid the live database was compared at. */
  contentTxid?: number;
  /** The newest txid the replica is known to have reached (latest generation), and whether the marker proves it. */
  newestTxid: number;
  proven: boolean;
  /** Things worth saying that are not failures (the newest uploads not proven by the marker yet, ...). */
  notes: string[];
  problems: VerifyProblem[];
  durationMs: number;
}

export interface VerifyOptions {
  storage: StorageClient;
  /** What to restore (default: the latest state). */
  target?: RestoreTarget;
  /** The live database: compare its content with the replica at the txid the agent says it is at. */
  dbPath?: string;
  /** The agent's state dir for dbPath (default `${dbPath}-pitr`). */
  stateDir?: string;
  signal?: AbortSignal;
  /** Called after each object's checksum pass. */
  onProgress?: (done: number, total: number) => void;
  /** How long to wait for the replica to receive the live database's txid (default 5 s). */
  catchUpWaitMs?: number;
}

/** Objects downloaded and checked at once: enough to hide request latency, few enough for memory. */
const CHECK_CONCURRENCY = 4;
const PIN_ATTEMPTS = 8;
const PIN_RETRY_MS = 250;
const CATCH_UP_POLL_MS = 500;

/**
 * Prove that the replica restores: (1) every snapshot and segment passes its checksum and format
 * checks, (2) the target restores and passes PRAGMA integrity_check, (3) with dbPath, the restore
 * at the agent's saved txid holds exactly the live database's content. Problems are collected, so
 * one run names every bad object. Throws only when verification cannot start (bad dbPath or state
 * dir, replica missing, empty or not listable) or on abort.
 * Writes nothing but a temp dir in os.tmpdir(), always removed. No console output, no exit.
 */
export async function verifyReplica(opts: VerifyOptions): Promise<VerifyResult> {
  const started = performance.now();
  const { storage, signal } = opts;
  const target: RestoreTarget = opts.target ?? { kind: 'latest' };
  const dbPath = opts.dbPath === undefined ? undefined : resolve(opts.dbPath);
  const stateDir = dbPath === undefined ? undefined : resolve(opts.stateDir ?? `${dbPath}-pitr`);
  // Cheap argument checks first, so a typo fails before minutes of downloading.
  if (dbPath !== undefined && stateDir !== undefined) {
    await readDbFileInfo(dbPath);
    if ((await loadPosition(stateDir)) === null) {
      throw new PitrError(
        'USAGE',
        `no agent position in ${join(stateDir, 'position.json')}`,
        'pass --state-dir with the directory `pitr replicate` uses for this database (default: DB-pitr next to it)',
      );
    }
  }

  const view = await loadReplica(storage, signal ? { signal } : {});
  const catalog = view.catalog;
  if (catalog.generations.length === 0 && !latestState(catalog).lost) {
    throw new PitrError('REPLICA_EMPTY', `replica ${storage.url} holds no pitr generations`, 'check the URL; is an agent replicating to it (pitr replicate DB URL)?');
  }
  const result: VerifyResult = {
    ok: false,
    replica: storage.url,
    generation: null,
    txid: 0,
    commitTime: 0,
    objectsChecked: 0,
    bytesChecked: 0,
    integrity: 'skipped',
    content: 'skipped',
    newestTxid: 0,
    proven: false,
    notes: [...view.notes],
    problems: [],
    durationMs: 0,
  };

  const bad = await checkObjects(storage, catalog, result, signal, opts.onProgress);
  // What is missing, judged with the objects found bad counted as damaged. Problems seen in this
  // first look are confirmed by a second (marker and LIST again) after the long checksum pass, so
  // a retention run deleting a generation's head meanwhile is not reported as damage.
  let seen = completenessProblems(buildCatalog(view.objects, { marker: view.marker, damaged: bad }));
  let final = view;
  if (seen.length > 0) {
    final = await loadReplica(storage, signal ? { signal } : {});
    const again = completenessProblems(buildCatalog(final.objects, { marker: final.marker, damaged: bad }));
    const ids = new Set(seen.map((p) => p.id));
    seen = again.filter((p) => ids.has(p.id));
  }
  for (const p of seen) result.problems.push(p.problem);
  const judged = buildCatalog(final.objects, { marker: final.marker, damaged: bad });
  const latest = latestState(judged);
  result.newestTxid = latest.txid;
  result.proven = final.marker !== null && latest.generation !== undefined && final.marker.generation === latest.generation.id && final.marker.txid >= latest.txid;
  if (latest.generation && !result.proven && !latest.lost) {
    result.notes.push(
      `the newest txid ${latest.txid} of generation ${latest.generation.id} is not proven by the replica's marker yet ` +
        '(the agent writes it within 10 s of an upload and when it stops): a loss of the newest objects would not show',
    );
  }

  let workDir: string | undefined;
  try {
    workDir = await mkdtemp(join(tmpdir(), 'pitr-verify-'));
    const main = await tryRestore(storage, judged, target, join(workDir, 'target.db'), bad, signal);
    let restored: Restored | null = null;
    if (main.ok) {
      restored = main.restored;
      result.generation = restored.generation;
      result.txid = restored.txid;
      result.commitTime = restored.commitTime;
      result.integrity = 'ok';
    } else {
      result.problems.push(main.problem);
      result.integrity = main.why === 'integrity' ? main.problem.message : `skipped: ${describeTarget(target)} could not be restored`;
    }
    if (dbPath !== undefined && stateDir !== undefined) {
      await compareWithLive(storage, dbPath, stateDir, workDir, restored, bad, result, signal, opts.catchUpWaitMs ?? 5000);
    } else {
      result.contentNote = 'no live database given (--db); content not compared';
    }
  } finally {
    if (workDir !== undefined) await rm(workDir, { recursive: true, force: true, maxRetries: 3 });
  }
  result.ok = result.problems.length === 0;
  result.durationMs = performance.now() - started;
  return result;
}

// ---------------------------------------------------------------------------------------------
// (1) checksums

interface ObjectRef {
  key: string;
  size: number;
  kind: 'snapshot' | 'segment';
}

/** A completeness problem with an identity, to tell a lasting one from a passing state. */
interface Identified {
  id: string;
  problem: VerifyProblem;
}

/**
 * Every hole, orphan, missing base snapshot and lost generation of the catalog. Holes and bases
 * that only damaged objects explain are left out: the checksum pass reports those objects.
 */
function completenessProblems(c: Catalog): Identified[] {
  const out: Identified[] = [];
  const hint = 'restore from another replica that holds these transactions; points outside them still restore (see `pitr list`)';
  const latest = latestState(c);
  if (latest.lost) {
    const id = 'id' in latest.lost ? latest.lost.id : latest.lost.generation;
    out.push({ id: `lost:${id}`, problem: { check: 'completeness', code: 'REPLICA_INCOMPLETE', message: describeLost(latest.lost), hint } });
  }
  for (const g of c.generations) {
    if (g.missingBase && g.missingBase.damaged.length === 0) {
      const m = g.missingBase;
      out.push({ id: `base:${g.id}:${m.firstTxid}`, problem: { check: 'completeness', code: 'REPLICA_INCOMPLETE', message: describeMissingBase(m), hint } });
    }
    for (const h of g.holes) {
      if (h.onlyDamaged) continue;
      const object = h.after ?? h.before;
      out.push({
        id: `hole:${g.id}:${h.firstTxid}:${h.lastTxid}`,
        problem: { check: 'completeness', code: 'REPLICA_INCOMPLETE', message: describeHole(h), hint, ...(object ? { object } : {}) },
      });
    }
    // Orphans that need the missing base are counted in its problem; those after a hole are named one by one.
    const base = g.missingBase && g.missingBase.damaged.length === 0 ? g.missingBase : undefined;
    for (const o of g.orphans) {
      if (base && o.lastTxid <= base.lastTxid) continue;
      out.push({ id: `orphan:${o.key}`, problem: { check: 'completeness', code: 'REPLICA_INCOMPLETE', object: o.key, message: describeOrphan(o), hint } });
    }
  }
  return out;
}

/** Check every listed object; returns the keys found bad, with why (for the restore steps to plan around). */
async function checkObjects(
  storage: StorageClient,
  catalog: Catalog,
  result: VerifyResult,
  signal: AbortSignal | undefined,
  onProgress: ((done: number, total: number) => void) | undefined,
): Promise<Map<string, string>> {
  const refs: ObjectRef[] = [];
  for (const g of catalog.generations) {
    for (const s of g.snapshots) refs.push({ key: s.key, size: s.size, kind: 'snapshot' });
    for (const s of g.segments) refs.push({ key: s.key, size: s.size, kind: 'segment' });
    for (const d of g.damaged) refs.push({ key: d.key, size: d.size, kind: d.kind });
  }
  refs.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
  const bad = new Map<string, string>();
  const vanished: ObjectRef[] = [];
  const failures: { ref: ObjectRef; err: unknown }[] = [];
  let done = 0;
  onProgress?.(0, refs.length);
  await forEachLimit(refs, CHECK_CONCURRENCY, async (ref) => {
    try {
      await checkObject(storage, ref, signal);
      result.objectsChecked++;
      result.bytesChecked += ref.size;
    } catch (err) {
      throwIfAborted(signal, err);
      if (isPitrError(err, 'OBJECT_NOT_FOUND')) vanished.push(ref);
      else failures.push({ ref, err });
    }
    onProgress?.(++done, refs.length);
  });

  if (vanished.length > 0) {
    // Retention may delete objects between our LIST and our GET; only objects that are still
    // listed yet cannot be read are a problem.
    const still = new Set((await storage.list(GENERATIONS_PREFIX, signal ? { signal } : {})).map((o) => o.key));
    for (const ref of vanished) {
      if (still.has(ref.key)) failures.push({ ref, err: new PitrError('OBJECT_NOT_FOUND', `${ref.kind} ${ref.key} is listed but cannot be read`, 'check the storage backend') });
    }
  }
  failures.sort((a, b) => (a.ref.key < b.ref.key ? -1 : 1));
  for (const { ref, err } of failures) {
    bad.set(ref.key, err instanceof Error ? err.message : String(err));
    result.objectsChecked += isPitrError(err, 'OBJECT_CORRUPT') ? 1 : 0;
    result.problems.push(problemFrom(err, isPitrError(err, 'OBJECT_CORRUPT') ? 'checksum' : 'read', ref.key));
  }
  return bad;
}

async function checkObject(storage: StorageClient, ref: ObjectRef, signal: AbortSignal | undefined): Promise<void> {
  const req = signal ? { signal } : {};
  if (ref.kind === 'segment') {
    // decodeSegment checks the trailer checksum, then the header against the key and every record.
    await decodeSegment(await storage.get(ref.key, req), ref.key);
    return;
  }
  // Snapshots can be as large as the database: stream them, keeping no page.
  const stream = await storage.getStream(ref.key, req);
  await readSnapshot(stream, () => {}, { name: ref.key, ...(signal ? { signal } : {}) });
}

// ---------------------------------------------------------------------------------------------
// (2) restore + integrity_check

interface Restored {
  generation: string;
  txid: number;
  commitTime: number;
  path: string;
}

type RestoreOutcome =
  | { ok: true; restored: Restored }
  | { ok: false; why: 'plan' | 'blocked' | 'restore' | 'integrity'; problem: VerifyProblem };

/**
 * restore() the target into `output`, planned around the objects already found bad (`catalog` was
 * built with them as damaged). A target only bad objects hold is 'blocked': the checksum pass has
 * reported them.
 */
async function tryRestore(
  storage: StorageClient,
  catalog: Catalog,
  target: RestoreTarget,
  output: string,
  bad: ReadonlyMap<string, string>,
  signal: AbortSignal | undefined,
): Promise<RestoreOutcome> {
  try {
    // Refusals first, without a temp file; restore() plans again, from its own look at the replica.
    planRestore(catalog, target, storage.url);
  } catch (err) {
    throwIfAborted(signal, err);
    const problem = problemFrom(err, 'restore');
    if (isPitrError(err, 'OBJECT_CORRUPT')) {
      const object = [...bad.keys()].find((k) => err.message.includes(k));
      return { ok: false, why: 'blocked', problem: { ...problem, ...(object ? { object } : {}) } };
    }
    return { ok: false, why: 'plan', problem };
  }
  try {
    const r = await restore({ storage, output, target, damaged: bad, ...(signal ? { signal } : {}) });
    return { ok: true, restored: { generation: r.plan.generation, txid: r.txid, commitTime: r.commitTime, path: output } };
  } catch (err) {
    throwIfAborted(signal, err);
    const integrity = isPitrError(err, 'INTEGRITY_CHECK_FAILED');
    return { ok: false, why: integrity ? 'integrity' : 'restore', problem: problemFrom(err, integrity ? 'integrity' : 'restore') };
  }
}

// ---------------------------------------------------------------------------------------------
// (3) content against the live database

type LiveState =
  | { pinned: true; position: Position; digest: ContentDigest }
  | { pinned: false; note: string };

async function compareWithLive(
  storage: StorageClient,
  dbPath: string,
  stateDir: string,
  workDir: string,
  restored: Restored | null,
  bad: ReadonlyMap<string, string>,
  result: VerifyResult,
  signal: AbortSignal | undefined,
  catchUpWaitMs: number,
): Promise<void> {
  const live = await pinLiveState(dbPath, stateDir, signal);
  if (!live.pinned) {
    result.contentNote = live.note;
    return;
  }
  const txid = live.position.lastTxid;
  result.contentTxid = txid;

  let source: Restored | null = restored && restored.txid === txid ? restored : null;
  if (source === null) {
    // The agent ships what it captured within moments; give it that long before giving up.
    const req = signal ? { signal } : {};
    let view: ReplicaView = await loadReplica(storage, req);
    const deadline = Date.now() + catchUpWaitMs;
    while (maxTxid(view.catalog) < txid && Date.now() < deadline) {
      await sleep(CATCH_UP_POLL_MS, undefined, req).catch((err: unknown) => throwIfAborted(signal, err));
      view = await loadReplica(storage, req);
    }
    const catalog = buildCatalog(view.objects, { marker: view.marker, damaged: bad });
    const held = maxTxid(catalog);
    if (held < txid) {
      result.contentNote = `live database is ahead of the replica (live txid ${txid}, replica holds up to ${held}); content not compared`;
      return;
    }
    const r = await tryRestore(storage, catalog, { kind: 'txid', txid }, join(workDir, 'live-txid.db'), bad, signal);
    if (!r.ok) {
      if (r.why === 'plan') {
        // Not restorable (a gap after a spool overflow, retention): not a new failure of the replica.
        result.contentNote = `txid ${txid} of the live database is not in a restorable window of the replica; content not compared`;
      } else if (r.why === 'blocked') {
        // The bad object is already reported by the checksum pass.
        result.contentNote = `txid ${txid} cannot be restored past ${r.problem.object ?? 'a bad object'}; content not compared`;
      } else {
        result.problems.push({ ...r.problem, check: r.why === 'integrity' ? 'integrity' : 'content' });
        result.contentNote = `the replica could not be restored at the live database's txid ${txid}; content not compared`;
      }
      return;
    }
    source = r.restored;
  }

  const restoredDigest = withDatabase(source.path, true, (db) => contentDigest(db));
  const diff = describeDifference(live.digest, restoredDigest);
  if (diff === null) {
    result.content = 'match';
    result.contentNote = `the replica at txid ${txid} matches the live database ${dbPath}`;
    return;
  }
  result.content = 'mismatch';
  result.contentNote = `content differs at txid ${txid}: ${diff}`;
  result.problems.push({
    check: 'content',
    code: 'VERIFY_MISMATCH',
    message: `the replica restored at txid ${txid} differs from the live database ${dbPath}: ${diff}`,
    hint: 'the replica does not hold what the app committed; keep this replica and the database for analysis, report it, and take a fresh snapshot (restart the agent with a new state dir)',
  });
}

/**
 * A read transaction on the live database whose state is provably the agent's saved position:
 * the position does not move while we look, the file is the one the agent tracks, and the WAL
 * holds no committed frame past the saved cursor. The digest is taken inside that transaction.
 * An active app or agent can make this miss; it is retried briefly, then reported as a note.
 */
async function pinLiveState(dbPath: string, stateDir: string, signal: AbortSignal | undefined): Promise<LiveState> {
  // Read-only: closing it never checkpoints or deletes the app's WAL.
  const db = openDatabase(dbPath, true);
  let note = '';
  try {
    db.pragma('busy_timeout = 5000');
    for (let attempt = 0; attempt < PIN_ATTEMPTS; attempt++) {
      if (attempt > 0) await sleep(PIN_RETRY_MS, undefined, signal ? { signal } : {}).catch((err: unknown) => throwIfAborted(signal, err));
      const before = await loadPosition(stateDir);
      if (before === null) return { pinned: false, note: `no agent position in ${stateDir}; content not compared` };
      db.exec('BEGIN');
      try {
        // A deferred BEGIN takes no lock; the first read fixes the snapshot we will digest.
        db.prepare('SELECT count(*) FROM sqlite_schema').pluck().get();
        const pages = Number(db.pragma('page_count', { simple: true }));
        const why = await whyNotExact(dbPath, before, pages, signal);
        const after = await loadPosition(stateDir);
        if (why === null && after !== null && JSON.stringify(after) === JSON.stringify(before)) {
          return { pinned: true, position: before, digest: contentDigest(db) };
        }
        note = why ?? 'the agent saved a new position while the live database was read (it is capturing commits)';
      } finally {
        db.exec('COMMIT');
      }
    }
  } finally {
    db.close();
  }
  return { pinned: false, note: `${note}; content not compared` };
}

/** null when the live database (read transaction already open, `pages` long) is exactly at `p`. */
async function whyNotExact(dbPath: string, p: Position, pages: number, signal: AbortSignal | undefined): Promise<string | null> {
  const st = await stat(dbPath);
  if (st.dev !== p.db.dev || st.ino !== p.db.ino) return `${dbPath} is not the file the agent's saved position describes (replaced?)`;
  const scan = await scanWal(`${dbPath}-wal`, p.cursor, signal ? { signal } : {});
  if (p.cursor === null) {
    if (scan.kind === 'ok' && scan.commits.length > 0) return `the live database has ${scan.commits.length} commit(s) the agent has not captured (is it running?)`;
    if (scan.kind !== 'ok' && scan.kind !== 'no-wal') return 'the WAL is being rewritten';
  } else {
    if (scan.kind === 'no-wal' || scan.kind === 'header-changed') return 'the WAL was checkpointed or restarted since the agent saved its position (is it running?)';
    if (scan.kind !== 'ok') return 'the WAL is being rewritten';
    if (scan.commits.length > 0) return `the live database has ${scan.commits.length} commit(s) the agent has not captured (is it running?)`;
    // The saved commit frame itself missing (or a frame being written): not provably the same state.
    if (scan.stop === 'torn-frame') return 'the WAL does not end cleanly at the saved position';
  }
  if (pages !== p.dbSizePages) return `the live database is ${pages} pages, the agent's saved position says ${p.dbSizePages}`;
  return null;
}

// ---------------------------------------------------------------------------------------------
// Content digest

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

// ---------------------------------------------------------------------------------------------
// helpers

function openDatabase(path: string, readonly: boolean): Database.Database {
  try {
    return new Database(path, { readonly, fileMustExist: true });
  } catch (err) {
    throw new PitrError('DB_OPEN_FAILED', `cannot open database ${path}: ${(err as Error).message}`, 'check the path and permissions', { cause: err });
  }
}

function withDatabase<T>(path: string, readonly: boolean, fn: (db: Database.Database) => T): T {
  const db = openDatabase(path, readonly);
  try {
    return fn(db);
  } finally {
    db.close();
  }
}

function problemFrom(err: unknown, check: VerifyProblem['check'], object?: string): VerifyProblem {
  if (err instanceof PitrError) {
    return { check, ...(object !== undefined ? { object } : {}), code: err.code, message: err.message, ...(err.hint ? { hint: err.hint } : {}) };
  }
  return { check, ...(object !== undefined ? { object } : {}), code: 'INTERNAL', message: `${object ? `${object}: ` : ''}${(err as Error)?.message ?? String(err)}` };
}

function throwIfAborted(signal: AbortSignal | undefined, cause: unknown): void {
  if (signal?.aborted) {
    if (isPitrError(cause, 'ABORTED')) throw cause;
    throw new PitrError('ABORTED', 'verify was aborted', undefined, { cause: signal.reason ?? cause });
  }
  if (cause !== undefined && isAbortError(cause)) throw cause;
}

function isAbortError(err: unknown): boolean {
  return typeof err === 'object' && err !== null && (err as { name?: unknown }).name === 'AbortError';
}

function describeTarget(t: RestoreTarget): string {
  return t.kind === 'latest' ? 'the latest state' : t.kind === 'txid' ? `txid ${t.txid}` : new Date(t.timeMs).toISOString();
}

/** Run fn over items with at most `limit` in flight; fn must not throw except to abort everything. */
async function forEachLimit<T>(items: readonly T[], limit: number, fn: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  let failure: { error: unknown } | undefined;
  const worker = async (): Promise<void> => {
    while (next < items.length && failure === undefined) {
      const item = items[next++] as T;
      try {
        await fn(item);
      } catch (error) {
        failure ??= { error };
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  if (failure !== undefined) throw failure.error;
}
