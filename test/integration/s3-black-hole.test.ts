/**
 * Catch-up after a black hole: the agent replicates to S3 (s3rver) through a proxy that goes dark
 * for OUTAGE_MS while the app writes (connections accepted, requests never answered, and the
 * connections that were open stay silent for good, like pooled keep-alive connections through a
 * middlebox that lost their state), then answers new connections again. The S3 replica must then
 * catch up: restoring its latest state gives exactly the app's final state.
 *
 * The replica URL sets a request timeout of 10 minutes, far beyond the deadline below: an upload
 * stuck on a dead connection can only be ended, and retried on a fresh one, by the short
 * first-byte timeout (default 5 s). Before it, the stuck attempt waited out the whole request
 * timeout. How long the catch-up took after the recovery is reported, not asserted.
 */
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { openAppDatabase } from '../fixtures/app-schema.js';
import { readWriterLog, type WriterLog } from '../fixtures/writer-log.js';
import { BlackHoleProxy } from '../storage/black-hole-proxy.js';
import { startS3Server, type S3TestServer } from '../storage/s3-server.js';
import {
  describeRun,
  inspectDatabase,
  makeTempDir,
  removeTempDir,
  runCliJson,
  startAgent,
  startWriter,
  trace,
  waitUntil,
  type Agent,
  type DatabaseState,
  type ListOutput,
  type RestoreOutput,
  type RunResult,
} from './helpers.js';

const COUNT = 60;
const SEED = 20261117;
/** How long the proxy stays dark (at least; until the writer is done if it takes longer). */
const OUTAGE_MS = 12_000;
/**
 * Generous for a loaded 2-core machine, yet out of reach without the first-byte timeout: the
 * request timeout in the replica URL is 10 minutes.
 */
const CATCH_UP_DEADLINE_MS = 60_000;
const BUCKET = 'pitr-black-hole';
const PREFIX = 'apps/app-1';

describe('S3 replica behind a black hole', { timeout: 5 * 60_000 }, () => {
  let server: S3TestServer | undefined;
  let proxy: BlackHoleProxy | undefined;
  let agent: Agent | undefined;
  let writerChild: ChildProcess | undefined;
  let tmp = '';
  let env: Record<string, string> = {};

  let log: WriterLog;
  let seqAtDark = -1;
  let outageMs = 0;
  let swallowed = 0;
  let caughtUp: DatabaseState & { txid: number } = { seq: -1, digest: '', integrity: '', journalMode: '', txid: -1 };
  /** When the catch-up happened, after the recovery: between these two (ms). */
  let catchUpAfter = { atLeast: 0, atMost: 0 };
  let stopped: RunResult;

  before(async () => {
    tmp = await makeTempDir('pitr-s3-black-hole-');
    const dbPath = join(tmp, 'app.db');
    const logPath = join(tmp, 'writer.jsonl');
    mkdirSync(join(tmp, 'out'));
    server = await startS3Server({ bucket: BUCKET });
    proxy = await BlackHoleProxy.start(server.endpoint);
    // The agent goes through the proxy; restores and listings go straight to the store.
    const viaProxy = `s3://${BUCKET}/${PREFIX}?endpoint=${proxy.endpoint}&region=us-east-1&force-path-style=true&request-timeout=10m`;
    const direct = `${server.url(PREFIX)}&force-path-style=true`;
    env = { ...server.env, AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: 'true' };
    openAppDatabase(dbPath).close();

    agent = startAgent([dbPath, viaProxy, '--sync-interval', '0', '--state-dir', join(tmp, 'state')], { env });
    await waitUntil('the S3 replica to list a generation', async () => {
      if (agent?.child.exitCode !== null) throw new Error(`agent exited\n${describeRun(await (agent as Agent).result)}`);
      return (await runCliJson<ListOutput>(['list', direct, '--json'], { env, timeoutMs: 30_000 })).generations.length > 0;
    });

    const writer = startWriter({ db: dbPath, log: logPath, count: COUNT, seed: SEED, pauseEvery: 5, pauseMs: 300 });
    writerChild = writer.child;
    let writerExited = false;
    void writer.result.then(() => (writerExited = true));
    await waitUntil('the writer to commit 10 transactions', async () => {
      const seq = (await readWriterLog(logPath)).lastSeq;
      trace(`writer at seq ${seq}`);
      return writerExited || seq >= 10;
    }, { timeoutMs: 2 * 60_000 });
    if (writerExited) assert.fail(`the writer ended before the black hole could start\n${describeRun(await writer.result)}`);

    // ---- the black hole ----
    proxy.blackHole();
    const darkAt = Date.now();
    seqAtDark = (await readWriterLog(logPath)).lastSeq;
    trace(`proxy dark at seq ${seqAtDark}`);
    const written = await writer.result;
    assert.equal(written.code, 0, describeRun(written));
    const left = darkAt + OUTAGE_MS - Date.now();
    if (left > 0) await sleep(left);
    outageMs = Date.now() - darkAt;
    swallowed = proxy.swallowed;
    log = await readWriterLog(logPath);
    proxy.recover({ keepDead: true });
    const recoveredAt = Date.now();
    trace(`proxy answers again after ${outageMs} ms; ${swallowed} requests went unanswered`);

    // ---- the catch-up ----
    const final = log.commits.get(log.lastSeq);
    assert.ok(final !== undefined, 'the writer logged no final commit');
    let probe = 0;
    let lastMissStart = recoveredAt;
    caughtUp = await waitUntil(
      `the S3 replica to restore the app's final state (seq ${log.lastSeq})`,
      async () => {
        const startedAt = Date.now();
        const out = join(tmp, 'out', `catch-up-${probe++}.db`);
        const r = await runCliJson<RestoreOutput>(['restore', direct, '-o', out, '--json'], { env });
        const state = inspectDatabase(out);
        if (state.digest !== final.digest) {
          lastMissStart = startedAt;
          return undefined;
        }
        catchUpAfter = { atLeast: lastMissStart - recoveredAt, atMost: Date.now() - recoveredAt };
        return { ...state, txid: r.txid };
      },
      { timeoutMs: CATCH_UP_DEADLINE_MS, intervalMs: 100 },
    );
    trace(`caught up ${catchUpAfter.atLeast}-${catchUpAfter.atMost} ms after the recovery`);
    stopped = await agent.stop('SIGTERM', 60_000);
  }, { timeout: 5 * 60_000 });

  after(async () => {
    if (writerChild !== undefined && writerChild.exitCode === null && writerChild.signalCode === null) writerChild.kill('SIGKILL');
    await agent?.stop('SIGKILL', 10_000);
    await proxy?.close();
    await server?.close();
    if (tmp !== '') await removeTempDir(tmp);
  });

  it('the app wrote while the store was dark, and the dark store left requests unanswered', (t) => {
    t.diagnostic(`dark for ${outageMs} ms from seq ${seqAtDark} to seq ${log.lastSeq}; ${swallowed} requests unanswered`);
    assert.equal(log.lastSeq, COUNT);
    assert.ok(log.lastSeq > seqAtDark, 'no commit while the store was dark');
    assert.ok(swallowed > 0, 'no request reached the dark proxy');
  });

  it('the replica catches up after the recovery: restore latest equals the app\'s final state', (t) => {
    t.diagnostic(`caught up between ${catchUpAfter.atLeast} and ${catchUpAfter.atMost} ms after the store answered again`);
    assert.equal(caughtUp.seq, COUNT);
    assert.equal(caughtUp.integrity, 'ok');
    assert.equal(caughtUp.digest, log.commits.get(COUNT)?.digest);
  });

  it('the agent kept running and exits 0 on SIGTERM', () => {
    assert.ok(!stopped.timedOut, `agent did not exit after SIGTERM\n${describeRun(stopped)}`);
    assert.equal(stopped.code, 0, describeRun(stopped));
  });
});
