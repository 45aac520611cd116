/**
 * The catalog's completeness reasoning and the planner's refusals, on listings built by hand:
 * holes, a missing tail the marker proves, a missing base snapshot, orphans, damaged objects.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { buildCatalog, latestState, maxTxid, type ReplicaMarker } from '../../src/catalog/catalog.js';
import { planRestore, type RestoreTarget } from '../../src/restore/plan.js';
import { planRetention } from '../../src/replicate/retention.js';
import { segmentKey, snapshotKey } from '../../src/segment/object-names.js';
import { isPitrError, type ErrorCode } from '../../src/errors.js';
import type { ObjectInfo } from '../../src/storage/storage-client.js';

const G1 = '0000000000010000';
const G2 = '0000000000020000';
const G9 = 'ffffffffffff0000';

function snap(gen: string, txid: number, t: number, size = 1000): ObjectInfo {
  return { key: snapshotKey(gen, txid, t), size, lastModified: new Date(0) };
}
function seg(gen: string, a: number, b: number, size = 500): ObjectInfo {
  return { key: segmentKey(gen, a, b, time(a), time(b)), size, lastModified: new Date(0) };
}
/** Commit time of txid n: 1000 ms apart, so a time names a txid. */
function time(n: number): number {
  return 1_000_000 + n * 1000;
}
function marker(gen: string, txid: number, ends?: ReplicaMarker['ends']): ReplicaMarker {
  return { generation: gen, txid, commitTime: time(txid), ...(ends ? { ends } : {}) };
}

// G1: snapshot 0, segments 1..10, 11..20 (complete, older). G2: snapshot 20, segments 21..30,
// 31..40, 41..50, 51..60 (the newest generation).
const g1 = [snap(G1, 0, time(0)), seg(G1, 1, 10), seg(G1, 11, 20)];
const g2 = [snap(G2, 20, time(20)), seg(G2, 21, 30), seg(G2, 31, 40), seg(G2, 41, 50), seg(G2, 51, 60)];
const healthy = [...g1, ...g2];
const without = (objs: ObjectInfo[], ...keys: string[]): ObjectInfo[] => objs.filter((o) => !keys.includes(o.key));

function refuses(objs: ObjectInfo[], target: RestoreTarget, code: ErrorCode, m: ReplicaMarker | null, ...mustSay: (string | RegExp)[]): string {
  let message = '';
  assert.throws(
    () => planRestore(buildCatalog(objs, { marker: m }), target),
    (err: unknown) => {
      assert.ok(isPitrError(err), String(err));
      assert.equal(err.code, code, err.message);
      message = err.message;
      for (const s of mustSay) assert.ok(typeof s === 'string' ? err.message.includes(s) : s.test(err.message), `"${err.message}" does not say ${String(s)}`);
      return true;
    },
  );
  return message;
}

describe('completeness: a healthy replica', () => {
  it('is complete, with no holes, orphans or damage, with or without a marker', () => {
    for (const m of [null, marker(G2, 60, [{ generation: G1, txid: 20, commitTime: time(20) }])]) {
      const c = buildCatalog(healthy, { marker: m });
      for (const g of c.generations) {
        assert.equal(g.complete, true);
        assert.deepEqual(g.holes, []);
        assert.deepEqual(g.orphans, []);
        assert.equal(g.missingBase, undefined);
      }
      assert.deepEqual(c.damaged, []);
      const l = latestState(c);
      assert.equal(l.generation?.id, G2);
      assert.equal(l.txid, 60);
      assert.equal(l.restorable, true);
      assert.equal(planRestore(c, { kind: 'latest' }).stopTxid, 60);
    }
  });

  it('a marker behind the listing is fine (uploads after it are just not proven yet)', () => {
    const c = buildCatalog(healthy, { marker: marker(G2, 45) });
    assert.equal(c.generations[1]?.complete, true);
    assert.equal(c.generations[1]?.provenTxid, 45);
    assert.equal(planRestore(c, { kind: 'latest' }).stopTxid, 60);
  });

  it('a marker of an older generation is fine while a newer one holds objects (the agent moved on)', () => {
    assert.equal(planRestore(buildCatalog(healthy, { marker: marker(G1, 20) }), { kind: 'latest' }).stopTxid, 60);
  });

  it('a generation the marker names that retention removed is superseded, not missing', () => {
    const c = buildCatalog(g2, { marker: marker(G2, 60, [{ generation: G1, txid: 20, commitTime: time(20) }]) });
    assert.deepEqual(c.missingGenerations.map((m) => [m.generation, m.superseded]), [[G1, true]]);
    assert.equal(planRestore(c, { kind: 'latest' }).stopTxid, 60);
  });

  it('retention trimming a generation head (a segment spanning the base snapshot) is not a hole', () => {
    const c = buildCatalog([snap(G2, 35, time(35)), seg(G2, 31, 40), seg(G2, 41, 50)]);
    const g = c.generations[0];
    assert.ok(g);
    assert.deepEqual(g.holes, []);
    assert.deepEqual(g.orphans, []);
    assert.equal(g.missingBase, undefined);
    assert.equal(g.complete, true);
  });
});

describe('completeness: the base snapshot of the newest generation is gone', () => {
  const objs = without(healthy, snapshotKey(G2, 20, time(20)));

  it('the generation is unrestorable, and says so', () => {
    const c = buildCatalog(objs);
    const g = c.generations[1];
    assert.ok(g);
    assert.equal(g.complete, false);
    assert.deepEqual(g.windows, []);
    assert.deepEqual([g.missingBase?.firstTxid, g.missingBase?.lastTxid], [21, 60]);
    assert.equal(g.orphans.length, 4);
  });

  it('latest refuses (never the older generation), naming the base and what is restorable', () => {
    refuses(objs, { kind: 'latest' }, 'REPLICA_INCOMPLETE', null, `generation ${G2} has no base snapshot`, 'at or before txid 20', `generation ${G1} txids 0..20`);
    // A time after the newest commit is the latest state too.
    refuses(objs, { kind: 'time', timeMs: time(99) }, 'REPLICA_INCOMPLETE', null, 'no base snapshot');
    refuses(objs, { kind: 'txid', txid: 40 }, 'REPLICA_INCOMPLETE', null, 'no base snapshot');
  });

  it('the older generation still restores by --txid and --to', () => {
    const c = buildCatalog(objs);
    assert.equal(planRestore(c, { kind: 'txid', txid: 15 }).stopTxid, 15);
    assert.equal(planRestore(c, { kind: 'time', timeMs: time(12) }).generation, G1);
  });

  it('with all its snapshots damaged (zero bytes) it is OBJECT_CORRUPT, naming them', () => {
    const zero = [...objs, snap(G2, 20, time(20), 0)];
    refuses(zero, { kind: 'latest' }, 'OBJECT_CORRUPT', null, snapshotKey(G2, 20, time(20)), 'empty (0 bytes)');
  });
});

describe('completeness: a middle segment of the newest generation is gone', () => {
  const objs = without(healthy, segmentKey(G2, 31, 40, time(31), time(40)));

  it('the hole and the orphans after it are named', () => {
    const g = buildCatalog(objs).generations[1];
    assert.ok(g);
    assert.deepEqual(g.holes.map((h) => [h.kind, h.firstTxid, h.lastTxid]), [['gap', 31, 40]]);
    assert.equal(g.holes[0]?.after, segmentKey(G2, 21, 30, time(21), time(30)));
    assert.equal(g.holes[0]?.before, segmentKey(G2, 41, 50, time(41), time(50)));
    assert.deepEqual(g.orphans.map((s) => s.firstTxid), [41, 51]);
    assert.deepEqual(g.windows.map((w) => [w.firstTxid, w.lastTxid]), [[20, 30]]);
    assert.equal(g.newestTxid, 60);
    assert.equal(g.complete, false);
  });

  it('latest, a txid past the hole and a time past the hole refuse, naming the missing range', () => {
    refuses(objs, { kind: 'latest' }, 'REPLICA_INCOMPLETE', null, 'txids 31..40', 'cannot be restored', `generation ${G2} txids 20..30`);
    refuses(objs, { kind: 'txid', txid: 45 }, 'REPLICA_INCOMPLETE', null, 'txids 31..40');
    refuses(objs, { kind: 'txid', txid: 35 }, 'REPLICA_INCOMPLETE', null, 'txids 31..40');
    refuses(objs, { kind: 'time', timeMs: time(45) }, 'REPLICA_INCOMPLETE', null, 'txids 31..40');
    // The last intact commit's own time: the next (missing) one may have committed in the same ms.
    refuses(objs, { kind: 'time', timeMs: time(30) }, 'REPLICA_INCOMPLETE', null, 'txids 31..40');
  });

  it('targets before the hole restore', () => {
    const c = buildCatalog(objs);
    assert.equal(planRestore(c, { kind: 'txid', txid: 30 }).stopTxid, 30);
    assert.equal(planRestore(c, { kind: 'time', timeMs: time(25) + 500 }).stopTxid, 30);
    assert.equal(planRestore(c, { kind: 'time', timeMs: time(25) + 500 }).stopTime, time(25) + 500);
  });

  it('a later snapshot after the hole makes the end restorable again, the hole stays named', () => {
    const c = buildCatalog([...objs, snap(G2, 45, time(45))]);
    const g = c.generations[1];
    assert.ok(g);
    assert.equal(g.complete, true);
    assert.deepEqual(g.holes.map((h) => [h.firstTxid, h.lastTxid]), [[31, 40]]);
    assert.deepEqual(g.orphans, []);
    assert.equal(planRestore(c, { kind: 'latest' }).stopTxid, 60);
    refuses([...objs, snap(G2, 45, time(45))], { kind: 'txid', txid: 42 }, 'REPLICA_INCOMPLETE', null, 'txids 31..40');
  });
});

describe('completeness: the newest segment is gone', () => {
  const objs = without(healthy, segmentKey(G2, 51, 60, time(51), time(60)));

  it('without a marker nothing can tell (the listing is a shorter, complete replica)', () => {
    assert.equal(planRestore(buildCatalog(objs), { kind: 'latest' }).stopTxid, 50);
  });

  it('the marker proves the tail: latest and targets in it refuse; earlier ones restore', () => {
    const m = marker(G2, 60);
    const g = buildCatalog(objs, { marker: m }).generations[1];
    assert.deepEqual(g?.holes.map((h) => [h.kind, h.firstTxid, h.lastTxid, h.provenBy]), [['tail', 51, 60, 'marker']]);
    refuses(objs, { kind: 'latest' }, 'REPLICA_INCOMPLETE', m, 'txids 51..60', "marker says txid 60 is durable", `generation ${G2} txids 20..50`);
    refuses(objs, { kind: 'time', timeMs: time(99) }, 'REPLICA_INCOMPLETE', m, 'txids 51..60');
    refuses(objs, { kind: 'txid', txid: 55 }, 'REPLICA_INCOMPLETE', m, 'txids 51..60');
    assert.equal(planRestore(buildCatalog(objs, { marker: m }), { kind: 'txid', txid: 50 }).stopTxid, 50);
    // Beyond anything the replica ever held is still out of the window.
    refuses(objs, { kind: 'txid', txid: 61 }, 'TARGET_OUT_OF_WINDOW', m);
  });

  it('an earlier generation\'s end is proven by the marker\'s ends', () => {
    const objs2 = without(healthy, segmentKey(G1, 11, 20, time(11), time(20)));
    const m = marker(G2, 60, [{ generation: G1, txid: 20, commitTime: time(20) }]);
    const g = buildCatalog(objs2, { marker: m }).generations[0];
    assert.deepEqual(g?.holes.map((h) => [h.kind, h.firstTxid, h.lastTxid]), [['tail', 11, 20]]);
    refuses(objs2, { kind: 'time', timeMs: time(15) }, 'REPLICA_INCOMPLETE', m, 'txids 11..20');
    assert.equal(planRestore(buildCatalog(objs2, { marker: m }), { kind: 'latest' }).stopTxid, 60);
  });

  it('the whole newest generation gone while the marker names it: latest refuses, not the older generation', () => {
    refuses(g1, { kind: 'latest' }, 'REPLICA_INCOMPLETE', marker(G2, 60), `generation ${G2} holds txids up to 60`, 'holds no object of it', `generation ${G1} txids 0..20`);
    assert.equal(planRestore(buildCatalog(g1, { marker: marker(G2, 60) }), { kind: 'txid', txid: 20 }).stopTxid, 20);
  });
});

describe('completeness: damaged objects are planned around', () => {
  it('a zero-byte segment spanning the whole generation is skipped, and said to be', () => {
    const junk = seg(G2, 21, 60, 0);
    const c = buildCatalog([...healthy, junk]);
    assert.deepEqual(c.damaged.map((d) => [d.key, d.reason]), [[junk.key, 'empty (0 bytes)']]);
    const g = c.generations[1];
    assert.equal(g?.complete, true);
    assert.deepEqual(g?.holes, []);
    for (const t of [{ kind: 'latest' }, { kind: 'txid', txid: 35 }, { kind: 'time', timeMs: time(44) }] as RestoreTarget[]) {
      const p = planRestore(c, t);
      assert.ok(!p.segments.some((s) => s.key === junk.key), 'the damaged object is not in the plan');
      assert.deepEqual(p.skipped.map((d) => d.key), [junk.key]);
    }
  });

  it('an object found bad when read is planned around like an empty one', () => {
    const long = seg(G2, 21, 60);
    const c = buildCatalog([...healthy, long], { damaged: new Map([[long.key, 'checksum mismatch']]) });
    assert.equal(planRestore(c, { kind: 'latest' }).segments.length, 4);
  });

  it('a zero-byte snapshot under a newer, foreign generation does not hide the real latest state', () => {
    const junk = snap(G9, 999, time(999), 0);
    const c = buildCatalog([...healthy, junk]);
    const p = planRestore(c, { kind: 'latest' });
    assert.equal(p.generation, G2);
    assert.equal(p.stopTxid, 60);
    assert.deepEqual(p.skippedGenerations, [G9]);
    assert.deepEqual(p.skipped.map((d) => d.key), [junk.key]);
    assert.equal(planRestore(c, { kind: 'time', timeMs: time(2000) }).stopTxid, 60);
    // Its txids are not held by anything intact.
    refuses([...healthy, junk], { kind: 'txid', txid: 999 }, 'OBJECT_CORRUPT', null, junk.key);
  });

  it('but when the marker names that generation, the agent wrote it: latest refuses', () => {
    const junk = snap(G9, 999, time(999), 0);
    refuses([...healthy, junk], { kind: 'latest' }, 'OBJECT_CORRUPT', marker(G9, 999), junk.key, `generation ${G1} txids 0..20`);
  });

  it('the only copy of the newest segment damaged is OBJECT_CORRUPT naming it', () => {
    const bad = seg(G2, 51, 60, 0);
    const objs = [...without(healthy, bad.key), bad];
    refuses(objs, { kind: 'latest' }, 'OBJECT_CORRUPT', null, bad.key, 'empty (0 bytes)');
    assert.equal(maxTxid(buildCatalog(objs)), 60, 'a damaged object still proves its txids existed');
  });

  it('a replica of nothing but damaged objects is OBJECT_CORRUPT, an empty one REPLICA_EMPTY', () => {
    refuses([snap(G1, 0, 0, 0)], { kind: 'latest' }, 'OBJECT_CORRUPT', null, 'empty (0 bytes)');
    refuses([], { kind: 'latest' }, 'REPLICA_EMPTY', null);
  });
});

describe('retention and damaged objects', () => {
  it('never takes an empty snapshot as the base it keeps, and deletes empty objects with the range they name', () => {
    // An empty snapshot at 45 must not become the base: trimming up to it would leave G2 nothing to start from.
    const emptySnap = snap(G2, 45, time(45), 0);
    const emptySeg = seg(G2, 21, 30, 0);
    const c = buildCatalog([...healthy, emptySnap, emptySeg]);
    const p = planRetention(c, time(50), G2);
    const gone = new Set([...p.snapshots, ...p.segments].map((e) => e.key));
    assert.ok(!gone.has(snapshotKey(G2, 20, time(20))), 'the intact base stays');
    assert.ok(!gone.has(emptySnap.key));
    // Past the whole of G1, its objects go, and an empty object in the trimmed range goes with them.
    const q = planRetention(buildCatalog([...healthy, seg(G1, 1, 20, 0)]), time(99), G2);
    assert.ok([...q.segments].some((e) => e.key === seg(G1, 1, 20, 0).key));
  });
});
