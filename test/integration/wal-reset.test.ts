/**
 * The WAL reset (Capture.resetWal): while an app writes without ever pausing long, pitr briefly
 * holds SQLite's write lock so the WAL restarts from its start instead of growing. Real processes:
 * the writer fixture commits with no pauses and no checkpoints of its own beyond SQLite's
 * automatic PASSIVE ones; a tiny --wal-reset-size makes resets frequent. Resets must never break
 * the chain: one generation, and every sampled txid restores to exactly the app's state then.
 */
import assert from 'node:assert/strict';
import { mkdirSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { pathToFileURL } from 'node:url';
import { openAppDatabase } from '../fixtures/app-schema.js';
import { readWriterLog, type WriterLog } from '../fixtures/writer-log.js';
import {
  describeRun,
  inspectDatabase,
  makeTempDir,
  mapLimit,
  removeTempDir,
  runCliJson,
  spread,
  startAgent,
  startWriter,
  waitUntil,
  type Agent,
  type ListOutput,
  type RestoreOutput,
  type RunResult,
} from './helpers.js';

const COUNT = Number(process.env['PITR_IT_RESET_COUNT'] ?? 300);
const SEED = 4242;

interface LogLine {
  msg?: string;
  mode?: string;
  busy?: boolean;
  walFrames?: number;
  checkpointedFrames?: number;
  level?: string;
}

describe('WAL reset under writes that never pause', { timeout: 10 * 60_000 }, () => {
  let tmp = '';
  let replicaUrl = '';
  let log: WriterLog;
  let list: ListOutput;
  let writerResult: RunResult;
  let agentResult: RunResult;
  let agentLines: LogLine[] = [];
  const agents: Agent[] = [];

  before(async () => {
    tmp = await makeTempDir('pitr-wal-reset-');
    const dbPath = join(tmp, 'app.db');
    const replicaDir = join(tmp, 'replica');
    replicaUrl = pathToFileURL(replicaDir).href;
    mkdirSync(replicaDir);
    mkdirSync(join(tmp, 'out'));
    openAppDatabase(dbPath).close();
    const agent = startAgent([
      dbPath,
      replicaUrl,
      '--sync-interval', '0',
      '--state-dir', join(tmp, 'state'),
      '--checkpoint-frames', '16',
      '--wal-reset-size', '256KiB',
      '--log-level', 'debug',
      '--log-format', 'json',
    ]);
    agents.push(agent);
    await waitUntil('the replica to list a generation', async () => (await runCliJson<ListOutput>(['list', replicaUrl, '--json'])).generations.length > 0);
    const logPath = join(tmp, 'writer.jsonl');
    writerResult = await startWriter({ db: dbPath, log: logPath, count: COUNT, seed: SEED, checkpoints: 'none' }).result;
    agentResult = await agent.stop('SIGTERM', 120_000);
    writeFileSync(join(tmp, 'agent.stderr.jsonl'), agentResult.stderr);
    agentLines = agentResult.stderr
      .split('\n')
      .filter((l) => l.startsWith('{'))
      .map((l) => JSON.parse(l) as LogLine);
    log = await readWriterLog(logPath);
    list = await runCliJson<ListOutput>(['list', replicaUrl, '--json']);
  });

  after(async () => {
    for (const a of agents) await a.stop('SIGKILL', 10_000);
    if (tmp !== '') await removeTempDir(tmp);
  });

  it('the writer and the agent ended cleanly', () => {
    assert.equal(writerResult.code, 0, describeRun(writerResult));
    assert.equal(agentResult.code, 0, describeRun(agentResult));
    const bad = agentLines.filter((l) => l.level === 'warn' || l.level === 'error');
    assert.deepEqual(bad, [], 'the agent logged warnings or errors');
  });

  it('pitr reset the WAL: its checkpoint under the write lock backfilled every frame', (t) => {
    const resets = agentLines.filter((l) => l.msg === 'checkpoint' && l.mode === 'RESET');
    const complete = resets.filter((l) => l.busy === false && l.walFrames !== undefined && l.walFrames > 0 && l.walFrames === l.checkpointedFrames);
    t.diagnostic(`${resets.length} resets, ${complete.length} complete`);
    assert.ok(complete.length > 0, `no complete WAL reset among ${resets.length} attempts`);
  });

  it('one unbroken generation holds every commit', () => {
    assert.equal(list.generations.length, 1, JSON.stringify(list.generations));
    const g = list.generations[0]!;
    assert.ok(g.lastTxid - g.firstTxid >= COUNT, `generation ${g.firstTxid}..${g.lastTxid} for ${COUNT} commits`);
  });

  it('every sampled txid restores to exactly the app\'s state at that commit', async () => {
    const g = list.generations[0]!;
    const txids = spread(g.firstTxid, g.lastTxid, 12);
    let n = 0;
    const results = await mapLimit(txids, 2, async (txid) => {
      const dir = join(tmp, 'out', `r${n++}`);
      mkdirSync(dir);
      const out = join(dir, 'restored.db');
      const r = await runCliJson<RestoreOutput>(['restore', replicaUrl, '-o', out, '--txid', String(txid), '--json']);
      assert.deepEqual(readdirSync(dir), ['restored.db']);
      return { txid, r, state: inspectDatabase(out) };
    });
    for (const { txid, r, state } of results) {
      assert.equal(r.txid, txid);
      assert.equal(state.integrity, 'ok', `integrity_check of txid ${txid}`);
      const expected = log.commits.get(state.seq);
      assert.ok(expected, `txid ${txid} restored seq ${state.seq}, which the writer never logged`);
      assert.equal(state.digest, expected.digest, `txid ${txid} (seq ${state.seq}) differs from the app's state`);
    }
    const last = results[results.length - 1]!;
    assert.equal(last.state.seq, log.lastSeq, 'the latest txid is not the writer\'s last commit');
  });
});
