/**
 * Catch-up steps as the listing shows them, on listings built by hand: the downtime each covers,
 * what a time target inside one restores (and that the plan says so), a --txid on one, and the
 * counts `pitr status` reports.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { buildCatalog, type GenerationEntry } from '../../src/catalog/catalog.js';
import { catchUpsOf, downtimeMs, totalDowntimeMs } from '../../src/catalog/catch-ups.js';
import { planRestore } from '../../src/restore/plan.js';
import { computeStatus } from '../../src/monitor/status.js';
import { segmentKey, snapshotKey } from '../../src/segment/object-names.js';
import { isPitrError } from '../../src/errors.js';
import type { ObjectInfo } from '../../src/storage/storage-client.js';

const G1 = '0000000000010000';
const G2 = '0000000000020000';
const T = 1_800_000_000_000;

function snap(gen: string, txid: number, t: number): ObjectInfo {
  return { key: snapshotKey(gen, txid, t), size: 1000, lastModified: new Date(0) };
}
function seg(gen: string, a: number, b: number, ta: number, tb: number): ObjectInfo {
  return { key: segmentKey(gen, a, b, ta, tb), size: 100, lastModified: new Date(0) };
}
function catchUp(gen: string, txid: number, t: number): ObjectInfo {
  return { key: segmentKey(gen, txid, txid, t, t, true), size: 300, lastModified: new Date(0) };
}

// G1: snapshot 1 (T), segments 2..4 and 5..6 (last at T+5 s), the agent down 41 s, catch-up 7
// at T+46 s, segments 8..9; down again, catch-up 10 at T+100 s; then 11.
const objects: ObjectInfo[] = [
  snap(G1, 1, T),
  seg(G1, 2, 4, T + 1000, T + 3000),
  seg(G1, 5, 6, T + 4000, T + 5000),
  catchUp(G1, 7, T + 46_000),
  seg(G1, 8, 9, T + 47_000, T + 48_000),
  catchUp(G1, 10, T + 100_000),
  seg(G1, 11, 11, T + 101_000, T + 101_000),
];

function only(objs: ObjectInfo[]): GenerationEntry {
  const c = buildCatalog(objs);
  assert.equal(c.generations.length, 1);
  return c.generations[0] as GenerationEntry;
}

describe('catch-up steps in the catalog', () => {
  it('are segments marked as such, restorable like any: one window through them, no hole', () => {
    const g = only(objects);
    assert.deepEqual(g.segments.filter((s) => s.catchUp).map((s) => s.firstTxid), [7, 10]);
    assert.equal(g.segments.filter((s) => !s.catchUp).every((s) => s.catchUp === undefined), true);
    assert.deepEqual(g.windows, [{ firstTxid: 1, lastTxid: 11, firstTime: T, lastTime: T + 101_000 }]);
    assert.deepEqual(g.holes, []);
    assert.equal(g.complete, true);
  });

  it('each covers the downtime from the commit of the txid before it to its own commit', () => {
    const steps = catchUpsOf(only(objects));
    assert.deepEqual(steps, [
      { generation: G1, txid: 7, from: T + 5000, to: T + 46_000, key: segmentKey(G1, 7, 7, T + 46_000, T + 46_000, true), bytes: 300 },
      { generation: G1, txid: 10, from: T + 48_000, to: T + 100_000, key: segmentKey(G1, 10, 10, T + 100_000, T + 100_000, true), bytes: 300 },
    ]);
    assert.deepEqual(steps.map(downtimeMs), [41_000, 52_000]);
    assert.equal(totalDowntimeMs(steps), 93_000);
  });

  it('one right after a snapshot starts at the snapshot; one after a missing txid has no known start', () => {
    const afterSnap = catchUpsOf(only([snap(G1, 1, T), catchUp(G1, 2, T + 9000)]));
    assert.equal(afterSnap[0]?.from, T);
    assert.equal(downtimeMs(afterSnap[0]!), 9000);
    // txid 6 is missing: the listing cannot say where the downtime starts (the header can).
    const g = only([snap(G1, 1, T), seg(G1, 2, 5, T + 1000, T + 4000), catchUp(G1, 7, T + 46_000)]);
    const [step] = catchUpsOf(g);
    assert.equal(step?.from, null);
    assert.equal(downtimeMs(step!), null);
    assert.equal(totalDowntimeMs([step!]), 0);
    assert.equal(g.holes.length, 1, 'the missing txid is a hole as before');
  });

  it('a generation without one has none', () => {
    assert.deepEqual(catchUpsOf(only([snap(G1, 1, T), seg(G1, 2, 4, T + 1000, T + 3000)])), []);
  });
});

describe('restore plans around catch-up steps', () => {
  const c = buildCatalog(objects);

  it('--to inside a downtime ends at the txid before the step, and the plan says which step', () => {
    const p = planRestore(c, { kind: 'time', timeMs: T + 20_000 });
    assert.deepEqual(p.segments.map((s) => s.firstTxid), [2, 5], 'the step is not applied');
    assert.equal(p.insideDowntime?.txid, 7);
    assert.equal(p.insideDowntime?.from, T + 5000);
    assert.equal(p.insideDowntime?.to, T + 46_000);
    assert.equal(p.catchUpTarget, undefined);
    // The second downtime, past the first step.
    const q = planRestore(c, { kind: 'time', timeMs: T + 99_999 });
    assert.equal(q.insideDowntime?.txid, 10);
    assert.deepEqual(q.segments.map((s) => s.firstTxid), [2, 5, 7, 8]);
  });

  it('at the commit before the step, at the step, or between app commits, no downtime is named', () => {
    for (const t of [T + 5000, T + 46_000, T + 2500, T + 47_500, T + 200_000]) {
      assert.equal(planRestore(c, { kind: 'time', timeMs: t }).insideDowntime, undefined, new Date(t).toISOString());
    }
    const atStep = planRestore(c, { kind: 'time', timeMs: T + 46_000 });
    assert.deepEqual(atStep.segments.map((s) => s.firstTxid), [2, 5, 7], 'at its commit time the step is applied');
  });

  it('--txid on a step restores the state after it, and the plan says it is a step; latest is unchanged', () => {
    const p = planRestore(c, { kind: 'txid', txid: 7 });
    assert.equal(p.stopTxid, 7);
    assert.deepEqual(p.segments.map((s) => s.firstTxid), [2, 5, 7]);
    assert.equal(p.catchUpTarget?.txid, 7);
    assert.equal(p.insideDowntime, undefined);
    assert.equal(planRestore(c, { kind: 'txid', txid: 6 }).catchUpTarget, undefined);
    const latest = planRestore(c, { kind: 'latest' });
    assert.equal(latest.stopTxid, 11);
    assert.equal(latest.insideDowntime, undefined);
    assert.equal(latest.catchUpTarget, undefined);
  });

  it('a snapshot taken after a step is used when it is the nearest, and the downtime is still named', () => {
    const withSnap = buildCatalog([...objects, snap(G1, 9, T + 48_000)]);
    const p = planRestore(withSnap, { kind: 'time', timeMs: T + 60_000 });
    assert.equal(p.snapshot.txid, 9);
    assert.equal(p.insideDowntime?.txid, 10);
    assert.deepEqual(p.segments.map((s) => s.firstTxid), []);
  });
});

describe('a reader that does not know the key form', () => {
  // It takes a .catchup.seg key for a foreign object: the same listing without the steps.
  const blind = buildCatalog(objects.filter((o) => !o.key.endsWith('.catchup.seg')));

  it('sees a hole where each step is, and refuses past it rather than restoring without it', () => {
    const g = blind.generations[0]!;
    assert.deepEqual(g.holes.map((h) => [h.firstTxid, h.lastTxid]), [[7, 7], [10, 10]]);
    for (const target of [{ kind: 'latest' as const }, { kind: 'txid' as const, txid: 8 }, { kind: 'time' as const, timeMs: T + 47_000 }, { kind: 'time' as const, timeMs: T + 20_000 }]) {
      assert.throws(() => planRestore(blind, target), (e: unknown) => isPitrError(e, 'REPLICA_INCOMPLETE'), JSON.stringify(target));
    }
    // Before the first step it restores what it always did.
    assert.equal(planRestore(blind, { kind: 'txid', txid: 6 }).stopTxid, 6);
  });
});

describe('status counts catch-up steps', () => {
  it('per generation, with the downtime they cover and the newest', () => {
    const NOW = T + 3_600_000;
    const all = [...objects, snap(G2, 20, T + 200_000), catchUp(G2, 21, T + 230_000), seg(G2, 22, 23, T + 231_000, T + 232_000)];
    const s = computeStatus('file:///r', all, null, NOW);
    assert.equal(s.catchUps, 3);
    assert.equal(s.catchUpDowntimeMs, 41_000 + 52_000 + 30_000);
    assert.deepEqual(s.catchUpsByGeneration, [
      { generation: G1, catchUps: 2, downtimeMs: 93_000 },
      { generation: G2, catchUps: 1, downtimeMs: 30_000 },
    ]);
    assert.equal(s.newestCatchUp?.generation, G2);
    assert.equal(s.newestCatchUp?.txid, 21);
    assert.deepEqual(s.problems, [], 'a catch-up step is not a problem');

    const none = computeStatus('file:///r', [snap(G1, 1, T)], null, NOW);
    assert.equal(none.catchUps, 0);
    assert.equal(none.newestCatchUp, null);
    assert.deepEqual(none.catchUpsByGeneration, []);
  });
});
