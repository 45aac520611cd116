/**
 * A replica holding a catch-up step, through the real CLI: `pitr list` and `pitr status` show the
 * step and the downtime it covers; `pitr restore --to` a time inside the downtime restores the
 * state before the step and says so (stderr, --json, --dry-run --json); `--txid` on the step and
 * the latest state restore exactly the states after it; `pitr verify` finds nothing wrong.
 * Restored files are compared byte for byte with the database states the objects were made from.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { CATCH_UP_GEN, CATCH_UP_TXID, DOWNTIME_FROM, DOWNTIME_TO, K, LAST_TXID, writeCatchUpReplica, type CatchUpReplica } from '../fixtures/catch-up-replica.js';
import { describeRun, makeTempDir, removeTempDir, runCli, runCliJson } from './helpers.js';

interface Downtime {
  from: string | null;
  fromMs: number | null;
  to: string;
  toMs: number;
  downtimeMs: number | null;
}
interface CatchUpJson extends Downtime {
  txid: number;
  key: string;
  bytes: number;
}
interface ListJson {
  generations: { id: string; segments: number; catchUps: CatchUpJson[]; holes: unknown[]; complete: boolean }[];
}
interface StatusJson {
  catchUps: number;
  catchUpDowntimeMs: number;
  newestCatchUp: (CatchUpJson & { generation: string; ageMs: number }) | null;
  catchUpsByGeneration: { generation: string; catchUps: number; downtimeMs: number }[];
  problems: string[];
  restorable: boolean;
}
interface RestoreJson {
  txid: number;
  insideDowntime: (Downtime & { catchUpTxid: number }) | null;
  catchUpTarget: (Downtime & { txid: number }) | null;
  segments: number | { key: string; firstTxid: number; catchUp: boolean }[];
}

const iso = (ms: number): string => new Date(ms).toISOString();
const INSIDE = iso(DOWNTIME_FROM + 20_000);

describe('catch-up steps through the CLI', () => {
  let tmp: string;
  let replica: CatchUpReplica;
  let n = 0;
  const out = (): string => join(tmp, `restored-${++n}.db`);

  before(async () => {
    tmp = await makeTempDir('pitr-catch-up-');
    replica = await writeCatchUpReplica(tmp);
  });
  after(() => removeTempDir(tmp));

  function assertState(path: string, txid: number): void {
    const want = replica.states.get(txid) as Buffer;
    assert.ok(readFileSync(path).equals(want), `${path} is not byte for byte the database at txid ${txid}`);
  }

  it('list shows the step and the downtime it covers, in --json and in text', async () => {
    const j = await runCliJson<ListJson>(['list', replica.dir, '--json']);
    const g = j.generations[0]!;
    assert.equal(g.id, CATCH_UP_GEN);
    assert.equal(g.complete, true);
    assert.deepEqual(g.holes, []);
    const size = replica.objects.find((o) => o.key === replica.catchUpKey)!.size;
    assert.deepEqual(g.catchUps, [
      { txid: CATCH_UP_TXID, from: iso(DOWNTIME_FROM), fromMs: DOWNTIME_FROM, to: iso(DOWNTIME_TO), toMs: DOWNTIME_TO, downtimeMs: 41_000, key: replica.catchUpKey, bytes: size },
    ]);

    const r = await runCli(['list', replica.dir]);
    assert.equal(r.code, 0, describeRun(r));
    assert.match(r.stdout, /4 segments \(1 catch-up step\)/);
    assert.ok(
      r.stdout.includes(`catch-up txid ${CATCH_UP_TXID}: 41s of downtime 2026-12-03T10:00:05.000Z .. 10:00:46.000Z (changes made while the agent was down, one step)`),
      r.stdout,
    );
  });

  it('status counts the steps, the downtime they cover, and names the newest', async () => {
    const j = await runCliJson<StatusJson>(['status', replica.dir, '--json']);
    assert.equal(j.restorable, true);
    assert.deepEqual(j.problems, []);
    assert.equal(j.catchUps, 1);
    assert.equal(j.catchUpDowntimeMs, 41_000);
    assert.deepEqual(j.catchUpsByGeneration, [{ generation: CATCH_UP_GEN, catchUps: 1, downtimeMs: 41_000 }]);
    assert.equal(j.newestCatchUp?.txid, CATCH_UP_TXID);
    assert.equal(j.newestCatchUp?.generation, CATCH_UP_GEN);
    assert.equal(j.newestCatchUp?.from, iso(DOWNTIME_FROM));
    assert.equal(j.newestCatchUp?.to, iso(DOWNTIME_TO));

    const r = await runCli(['status', replica.dir]);
    assert.equal(r.code, 0, describeRun(r));
    assert.match(r.stdout, /^catch-ups {3}1 \(changes made while the agent was down, one step each\), 41s of downtime in all$/m);
    assert.match(r.stdout, new RegExp(`newest txid ${CATCH_UP_TXID} of generation ${CATCH_UP_GEN}: 41s of downtime 2026-12-03T10:00:05.000Z \\.\\. 10:00:46.000Z`));
  });

  it('--to inside the downtime restores the state before the step, and says so', async () => {
    const path = out();
    const r = await runCli(['restore', replica.dir, '-o', path, '--to', INSIDE]);
    assert.equal(r.code, 0, describeRun(r));
    assertState(path, K);
    const warning =
      `pitr: warning: the target falls inside a downtime of the agent (from ${iso(DOWNTIME_FROM)} to ${iso(DOWNTIME_TO)}): ` +
      `transactions made then are known only as one catch-up step (txid ${CATCH_UP_TXID}); restored the state before it, txid ${K}. ` +
      `Use --txid ${CATCH_UP_TXID} for the state after it.`;
    assert.ok(r.stderr.split('\n').includes(warning), r.stderr);

    const jsonPath = out();
    const j = await runCliJson<RestoreJson>(['restore', replica.dir, '-o', jsonPath, '--to', INSIDE, '--json']);
    assert.equal(j.txid, K);
    assert.deepEqual(j.insideDowntime, { catchUpTxid: CATCH_UP_TXID, from: iso(DOWNTIME_FROM), fromMs: DOWNTIME_FROM, to: iso(DOWNTIME_TO), toMs: DOWNTIME_TO, downtimeMs: 41_000 });
    assert.equal(j.catchUpTarget, null);
    assertState(jsonPath, K);
  });

  it('--dry-run --json of such a target names the downtime and plans no step', async () => {
    const j = await runCliJson<RestoreJson>(['restore', replica.dir, '-o', out(), '--to', INSIDE, '--dry-run', '--json']);
    assert.equal(j.txid, K);
    assert.equal(j.insideDowntime?.catchUpTxid, CATCH_UP_TXID);
    assert.ok(Array.isArray(j.segments));
    assert.equal(j.segments.some((s) => s.catchUp), false);
  });

  it('--txid on the step restores exactly the state after it, without a warning; --dry-run says it is a step', async () => {
    const path = out();
    const j = await runCliJson<RestoreJson>(['restore', replica.dir, '-o', path, '--txid', String(CATCH_UP_TXID), '--json']);
    assert.equal(j.txid, CATCH_UP_TXID);
    assert.equal(j.insideDowntime, null);
    assert.equal(j.catchUpTarget?.txid, CATCH_UP_TXID);
    assertState(path, CATCH_UP_TXID);

    const r = await runCli(['restore', replica.dir, '-o', out(), '--txid', String(CATCH_UP_TXID)]);
    assert.equal(r.code, 0, describeRun(r));
    assert.equal(r.stderr, '', 'no warning');

    const d = await runCli(['restore', replica.dir, '-o', out(), '--txid', String(CATCH_UP_TXID), '--dry-run']);
    assert.equal(d.code, 0, describeRun(d));
    assert.ok(d.stdout.includes(`  catch-up  ${replica.catchUpKey}  txid ${CATCH_UP_TXID}`), d.stdout);
    assert.match(d.stdout, new RegExp(`note: txid ${CATCH_UP_TXID} is a catch-up step: the changes made while the agent was down \\(41s, `));
  });

  it('--to the step\'s own commit time, and the latest state, restore the states after it without a warning', async () => {
    const atStep = out();
    const r = await runCli(['restore', replica.dir, '-o', atStep, '--to', iso(DOWNTIME_TO)]);
    assert.equal(r.code, 0, describeRun(r));
    assert.equal(r.stderr, '');
    assertState(atStep, CATCH_UP_TXID);

    const latest = out();
    const l = await runCli(['restore', replica.dir, '-o', latest, '--json']);
    assert.equal(l.code, 0, describeRun(l));
    assert.equal(l.stderr, '');
    const j = JSON.parse(l.stdout) as RestoreJson;
    assert.equal(j.txid, LAST_TXID);
    assert.equal(j.insideDowntime, null);
    assert.equal(j.catchUpTarget, null);
    assertState(latest, LAST_TXID);

    // Every state before the downtime still restores exactly, by txid.
    for (let txid = 1; txid <= K; txid++) {
      const p = out();
      await runCliJson<RestoreJson>(['restore', replica.dir, '-o', p, '--txid', String(txid), '--json']);
      assertState(p, txid);
    }
  });

  it('verify finds the replica with a step whole: checksums, chain, test restores on both sides', async () => {
    for (const target of [[], ['--txid', String(CATCH_UP_TXID)], ['--to', INSIDE]]) {
      const r = await runCli(['verify', replica.dir, '--json', ...target]);
      assert.equal(r.code, 0, describeRun(r));
      const j = JSON.parse(r.stdout) as { ok: boolean; objectsChecked: number; problems: unknown[]; integrity: string; txid: number; notes: string[] };
      assert.equal(j.ok, true, r.stdout);
      assert.equal(j.objectsChecked, replica.objects.length);
      assert.equal(j.integrity, 'ok');
      assert.deepEqual(j.problems, []);
      const inside = j.notes.filter((n) => n.includes('inside a downtime'));
      if (target[0] === '--to') {
        assert.equal(j.txid, K);
        assert.equal(inside.length, 1, r.stdout);
        assert.match(inside[0]!, new RegExp(`catch-up step \\(txid ${CATCH_UP_TXID}\\); verified the state before it, txid ${K}\\.`));
      } else {
        assert.deepEqual(inside, []);
      }
    }
  });
});
