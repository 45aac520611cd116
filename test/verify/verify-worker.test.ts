/**
 * verifyInWorker against a real replica: a real `pitr replicate` agent replicates a database of a
 * few MB that a separate process writes (playing the app). The worker's report must be the one
 * verifyReplica gives in this thread, healthy and damaged, while this thread's event loop runs.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdirSync, readdirSync, readFileSync, readlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, before, describe, it } from 'node:test';
import { isPitrError } from '../../src/errors.js';
import { openStorage } from '../../src/storage/open-storage.js';
import { readAgentPosition } from '../../src/verify/agent-position.js';
import { verifyReplica, type VerifyReport } from '../../src/verify/verify-replica.js';
import { verifyInWorker } from '../../src/verify/verify-worker.js';
import {
  childEnv,
  listFilesRecursive,
  makeTempDir,
  removeTempDir,
  runCliJson,
  startAgent,
  waitUntil,
  type Agent,
  type ListOutput,
} from '../integration/helpers.js';

const REPO = fileURLToPath(new URL('../../../', import.meta.url));

/** The app: a separate process that commits `txs` transactions of `rows` random blobs of `size` bytes, then closes. */
const APP_SCRIPT = `
const Database = require('better-sqlite3');
const [path, txs, rows, size] = process.argv.slice(1);
const db = new Database(path);
db.pragma('journal_mode = WAL');
db.pragma('busy_timeout = 5000');
db.exec('CREATE TABLE IF NOT EXISTS blobs (id INTEGER PRIMARY KEY, body BLOB NOT NULL)');
const ins = db.prepare('INSERT INTO blobs (body) VALUES (randomblob(?))');
for (let t = 0; t < Number(txs); t++) db.transaction(() => { for (let i = 0; i < Number(rows); i++) ins.run(Number(size)); })();
db.close();
`;

async function appWrites(dbPath: string, txs: number, rows: number, size: number): Promise<void> {
  // Run from the repository so that require('better-sqlite3') finds its node_modules.
  await promisify(execFile)(process.execPath, ['-e', APP_SCRIPT, dbPath, String(txs), String(rows), String(size)], { cwd: REPO, env: childEnv(), timeout: 120_000 });
}

/** What must agree between two verifications of one unchanged replica. */
function essence(r: VerifyReport): unknown {
  return { ok: r.ok, generation: r.generation, txid: r.txid, integrity: r.integrity, content: r.content, contentTxid: r.contentTxid, problems: r.problems };
}

function flipMiddleByte(path: string): Buffer {
  const original = readFileSync(path);
  const damaged = Buffer.from(original);
  const at = Math.floor(damaged.length / 2);
  damaged[at] = (damaged[at] as number) ^ 0x01;
  writeFileSync(path, damaged);
  return original;
}

/** Files of `dbPath` (the database, -wal, -shm) that descriptors of this process hold; [] without /proc. */
function heldHere(dbPath: string): string[] {
  let fds: string[];
  try {
    fds = readdirSync('/proc/self/fd');
  } catch {
    return [];
  }
  const out: string[] = [];
  for (const fd of fds) {
    try {
      const target = readlinkSync(`/proc/self/fd/${fd}`);
      if (target.startsWith(dbPath)) out.push(target);
    } catch {
      // closed meanwhile
    }
  }
  return out;
}

describe('verifyInWorker', () => {
  let dir: string;
  let dbPath: string;
  let replica: string;
  let stateDir: string;
  let tmp: string;
  let savedTmp: string | undefined;
  let agent: Agent | undefined;

  const local = async (): Promise<VerifyReport> => {
    const storage = await openStorage(replica);
    try {
      return await verifyReplica({ storage, dbPath, stateDir });
    } finally {
      await storage.close();
    }
  };
  const inWorker = (signal?: AbortSignal): Promise<VerifyReport> => verifyInWorker({ url: replica, dbPath, stateDir }, signal);
  const assertTmpEmpty = (): void => assert.deepEqual(readdirSync(tmp), [], 'verify leaves nothing in the temp dir');

  before(async () => {
    dir = await makeTempDir('pitr-verify-worker-');
    dbPath = join(dir, 'app.db');
    replica = join(dir, 'replica');
    stateDir = join(dir, 'state');
    // os.tmpdir() follows TMPDIR: a private one shows what verify leaves behind.
    tmp = join(dir, 'tmp');
    mkdirSync(tmp);
    savedTmp = process.env['TMPDIR'];
    process.env['TMPDIR'] = tmp;

    await appWrites(dbPath, 8, 250, 4096); // ~8 MB
    // The agent's control socket would default to TMPDIR too: keep it out of the checked dir.
    agent = startAgent([dbPath, replica, '--sync-interval', '0', '--state-dir', stateDir, '--socket', join(dir, 'agent.sock')]);
    await waitUntil('the first generation', async () => (await runCliJson<ListOutput>(['list', replica, '--json']).catch(() => undefined))?.generations.length === 1);
    await appWrites(dbPath, 20, 3, 4096); // segments after the snapshot
    await waitUntil('the replica to hold what the agent captured', async () => {
      const p = await readAgentPosition(stateDir);
      const list = await runCliJson<ListOutput>(['list', replica, '--json']);
      const last = list.generations.at(-1);
      return p !== null && last !== undefined && last.id === p.generation && last.lastTxid >= p.lastTxid && last.segments > 0;
    });
  });

  after(async () => {
    if (agent) await agent.stop('SIGKILL');
    if (savedTmp === undefined) delete process.env['TMPDIR'];
    else process.env['TMPDIR'] = savedTmp;
    if (dir) await removeTempDir(dir);
  });

  it('reports what verifyReplica reports on a healthy replica, content compared with the live database', async () => {
    const here = await local();
    const there = await inWorker();
    assert.equal(there.ok, true, JSON.stringify(there.problems));
    assert.equal(there.content, 'match', there.contentNote);
    assert.deepEqual(essence(there), essence(here));
    assert.ok(there.objectsChecked >= 2);
    assertTmpEmpty();
  });

  it('reports the same problems as verifyReplica for a damaged object', async () => {
    const seg = listFilesRecursive(replica).find((k) => k.endsWith('.seg'));
    assert.ok(seg, 'a segment to damage');
    const original = flipMiddleByte(join(replica, seg));
    try {
      const here = await local();
      const there = await inWorker();
      assert.equal(there.ok, false);
      const bad = there.problems.find((p) => p.check === 'checksum');
      assert.equal(bad?.code, 'OBJECT_CORRUPT');
      assert.equal(bad?.object, seg);
      assert.deepEqual(essence(there), essence(here));
    } finally {
      writeFileSync(join(replica, seg), original);
    }
    assert.equal((await inWorker()).ok, true);
    assertTmpEmpty();
  });

  it('leaves this thread\'s event loop running while it digests the database', async () => {
    let ticks = 0;
    const timer = setInterval(() => ticks++, 1);
    let report: VerifyReport;
    try {
      report = await inWorker();
    } finally {
      clearInterval(timer);
    }
    assert.equal(report.content, 'match', report.contentNote);
    assert.ok(report.bytesChecked > 1024 * 1024, `a database of some MB (${report.bytesChecked} bytes checked)`);
    assert.ok(ticks > 0, 'the interval ticked during verification');
  });

  it('rejects with the PitrError verifyReplica throws (code and hint cross the thread)', async () => {
    const missing = join(dir, 'no-such-replica');
    const storage = await openStorage(missing);
    const want = await verifyReplica({ storage, dbPath, stateDir }).then(() => assert.fail('verifyReplica should throw'), (e: unknown) => e);
    await storage.close();
    assert.ok(isPitrError(want));
    await assert.rejects(verifyInWorker({ url: missing, dbPath, stateDir }), (err: unknown) => {
      assert.ok(isPitrError(err));
      assert.equal(err.code, want.code);
      assert.equal(err.message, want.message);
      assert.equal(err.hint, want.hint);
      return true;
    });
    assertTmpEmpty();
  });

  it('abort terminates the worker, closing its connection to the live database: ABORTED, no temp files left', async () => {
    // Abort while the worker holds the live database open (the agent is another process, so any
    // descriptor of it here is the worker's). A run that ends before it is seen is tried again.
    let caught = false;
    for (let attempt = 0; attempt < 3 && !caught; attempt++) {
      const ac = new AbortController();
      let settled = false;
      const run = inWorker(ac.signal).finally(() => (settled = true));
      while (!settled && heldHere(dbPath).length === 0) await sleep(1);
      if (settled) {
        await run;
        continue;
      }
      ac.abort();
      await assert.rejects(run, (err: unknown) => isPitrError(err, 'ABORTED'));
      caught = true;
    }
    assert.ok(caught, 'aborted while the worker had the live database open');
    assert.deepEqual(heldHere(dbPath), [], 'the terminated worker holds nothing of the live database');
    assertTmpEmpty();
    assert.equal((await inWorker()).ok, true, 'verification runs again after an abort');
  });

  it('an already aborted signal starts no worker', async () => {
    const ac = new AbortController();
    ac.abort();
    await assert.rejects(inWorker(ac.signal), (err: unknown) => isPitrError(err, 'ABORTED'));
    assertTmpEmpty();
  });
});
