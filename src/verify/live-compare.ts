import { stat } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { buildCatalog, maxTxid } from '../catalog/catalog.js';
import { loadReplica, type ReplicaView } from '../restore/replica-view.js';
import type { StorageClient } from '../storage/storage-client.js';
import { scanWal } from '../wal/wal-scan.js';
import { readAgentPosition, samePosition, type AgentPosition } from './agent-position.js';
import { contentDigest, describeDifference, type ContentDigest } from './content-digest.js';
import { openReadOnly, readLive } from './live-reader.js';
import { throwIfAborted } from './problems.js';
import { tryRestore, type Restored } from './test-restore.js';
import type { VerifyResult } from './verify-report.js';

const PIN_ATTEMPTS = 8;
const PIN_RETRY_MS = 250;
const CATCH_UP_POLL_MS = 500;

type LiveState =
  | { pinned: true; position: AgentPosition; digest: ContentDigest }
  | { pinned: false; note: string };

export interface LiveCompareInput {
  storage: StorageClient;
  dbPath: string;
  stateDir: string;
  /** A private directory for the restore at the live txid. */
  workDir: string;
  /** The restore already made, reused when it is at the live txid. */
  restored: Restored | null;
  /** Objects the checksum pass found bad, to plan around. */
  bad: ReadonlyMap<string, string>;
  signal: AbortSignal | undefined;
  /** How long to wait for the replica to receive the live database's txid. */
  catchUpWaitMs: number;
}

/**
 * Compare the live database's content with the replica restored at the txid the agent says the
 * live database is at; sets result.content / contentNote / contentTxid and adds a problem on a
 * mismatch. When the live database cannot be pinned to one txid the replica holds, the comparison
 * is skipped with a note: an active app or a stopped agent is not a failure of the replica.
 */
export async function compareWithLive(input: LiveCompareInput, result: VerifyResult): Promise<void> {
  const { storage, dbPath, stateDir, workDir, restored, bad, signal } = input;
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
    const deadline = Date.now() + input.catchUpWaitMs;
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

  const db = openReadOnly(source.path);
  let restoredDigest: ContentDigest;
  try {
    restoredDigest = contentDigest(db);
  } finally {
    db.close();
  }
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
 * No connection stays open between attempts, nor after.
 */
async function pinLiveState(dbPath: string, stateDir: string, signal: AbortSignal | undefined): Promise<LiveState> {
  let note = '';
  for (let attempt = 0; attempt < PIN_ATTEMPTS; attempt++) {
    if (attempt > 0) await sleep(PIN_RETRY_MS, undefined, signal ? { signal } : {}).catch((err: unknown) => throwIfAborted(signal, err));
    const before = await readAgentPosition(stateDir);
    if (before === null) return { pinned: false, note: `no agent position in ${stateDir}; content not compared` };
    const read = await readLive(dbPath, async (db): Promise<LiveState> => {
      const pages = Number(db.pragma('page_count', { simple: true }));
      const why = await whyNotExact(dbPath, before, pages, signal);
      const after = await readAgentPosition(stateDir);
      if (why === null && after !== null && samePosition(after, before)) {
        return { pinned: true, position: before, digest: contentDigest(db) };
      }
      return { pinned: false, note: why ?? 'the agent saved a new position while the live database was read (it is capturing commits)' };
    });
    // Files replaced under the connection: what it read is not the database. Refuse at once.
    if (!read.ok) return { pinned: false, note: `${read.why}; content not compared` };
    if (read.value.pinned) return read.value;
    note = read.value.note;
  }
  return { pinned: false, note: `${note}; content not compared` };
}

/** null when the live database (read transaction already open, `pages` long) is exactly at `p`. */
async function whyNotExact(dbPath: string, p: AgentPosition, pages: number, signal: AbortSignal | undefined): Promise<string | null> {
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
