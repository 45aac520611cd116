import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { buildCatalog } from '../../src/catalog/catalog.js';
import { planRestore } from '../../src/restore/plan.js';
import { nextRetentionKeepFrom, planRetention } from '../../src/replicate/retention.js';
import { segmentKey, snapshotKey } from '../../src/segment/object-names.js';
import { isPitrError } from '../../src/errors.js';
import type { ObjectInfo } from '../../src/storage/storage-client.js';

const G1 = '0000000000010000';
const G2 = '0000000000020000';

function snap(gen: string, txid: number, t: number): ObjectInfo {
  return { key: snapshotKey(gen, txid, t), size: 100, lastModified: new Date(0) };
}
function seg(gen: string, a: number, b: number, ta: number, tb: number): ObjectInfo {
  return { key: segmentKey(gen, a, b, ta, tb), size: 10, lastModified: new Date(0) };
}

// G1: snapshot at txid 1 (t=1000), segments 2..5 (t 1100..1400), 6..9 (t 1500..1800), snapshot at 9;
// G2 starts after a break: snapshot txid 20 (t=5000), segment 21..25 (t 5100..5500).
const objects: ObjectInfo[] = [
  snap(G1, 1, 1000),
  seg(G1, 2, 5, 1100, 1400),
  seg(G1, 6, 9, 1500, 1800),
  snap(G1, 9, 1800),
  snap(G2, 20, 5000),
  seg(G2, 21, 25, 5100, 5500),
  { key: 'README.txt', size: 1, lastModified: new Date(0) },
];

describe('catalog', () => {
  it('groups objects by generation and computes windows', () => {
    const c = buildCatalog(objects);
    assert.deepEqual(c.foreign, ['README.txt']);
    assert.deepEqual(c.generations.map((g) => g.id), [G1, G2]);
    assert.deepEqual(c.generations[0]?.windows, [{ firstTxid: 1, lastTxid: 9, firstTime: 1000, lastTime: 1800 }]);
    assert.deepEqual(c.generations[1]?.windows, [{ firstTxid: 20, lastTxid: 25, firstTime: 5000, lastTime: 5500 }]);
  });

  it('a missing segment splits the window; a later snapshot reopens it', () => {
    const c = buildCatalog([snap(G1, 1, 1000), seg(G1, 2, 5, 1100, 1400), seg(G1, 8, 9, 1700, 1800), snap(G1, 7, 1600)]);
    assert.deepEqual(
      c.generations[0]?.windows.map((w) => [w.firstTxid, w.lastTxid]),
      [
        [1, 5],
        [7, 9],
      ],
    );
  });

  it('overlapping segments extend the chain', () => {
    const c = buildCatalog([snap(G1, 1, 1000), seg(G1, 2, 5, 1100, 1400), seg(G1, 4, 8, 1300, 1700)]);
    assert.deepEqual(c.generations[0]?.windows.map((w) => [w.firstTxid, w.lastTxid]), [[1, 8]]);
  });
});

describe('planRestore', () => {
  const c = buildCatalog(objects);

  it('latest = end of the newest generation', () => {
    const p = planRestore(c, { kind: 'latest' });
    assert.equal(p.generation, G2);
    assert.equal(p.snapshot.txid, 20);
    assert.equal(p.stopTxid, 25);
    assert.equal(p.segments.length, 1);
  });

  it('txid picks the newest snapshot at or before it', () => {
    const p = planRestore(c, { kind: 'txid', txid: 9 });
    assert.equal(p.snapshot.txid, 9);
    assert.equal(p.segments.length, 0);
    const q = planRestore(c, { kind: 'txid', txid: 7 });
    assert.equal(q.snapshot.txid, 1);
    assert.deepEqual(q.segments.map((s) => s.firstTxid), [2, 6]);
    assert.equal(q.stopTxid, 7);
  });

  it('time inside a window stops at that time', () => {
    const p = planRestore(c, { kind: 'time', timeMs: 1450 });
    assert.equal(p.generation, G1);
    assert.equal(p.snapshot.txid, 1);
    assert.equal(p.stopTime, 1450);
    assert.deepEqual(p.segments.map((s) => s.firstTxid), [2]);
  });

  it('time after the last commit restores the latest state', () => {
    const p = planRestore(c, { kind: 'time', timeMs: 99_999 });
    assert.equal(p.generation, G2);
    assert.equal(p.stopTxid, 25);
  });

  for (const [name, target] of [
    ['before the window', { kind: 'time', timeMs: 10 }],
    ['between generations', { kind: 'time', timeMs: 3000 }],
    ['txid in no window', { kind: 'txid', txid: 15 }],
    ['txid past the end', { kind: 'txid', txid: 26 }],
  ] as const) {
    it(`refuses a target ${name}, printing the windows`, () => {
      assert.throws(
        () => planRestore(c, target),
        (err) => isPitrError(err, 'TARGET_OUT_OF_WINDOW') && err.message.includes('txid 1..9') && err.message.includes('txid 20..25'),
      );
    });
  }

  it('empty replica', () => {
    assert.throws(() => planRestore(buildCatalog([]), { kind: 'latest' }), (err) => isPitrError(err, 'REPLICA_EMPTY'));
  });
});

describe('planRetention', () => {
  const c = buildCatalog(objects);

  it('keeps everything needed from the cut-off on', () => {
    // Cut-off inside G2 after its second snapshot: G1 is wholly older (points between the
    // generations are not restorable anyway); in G2 the base snapshot at 23 and the segment
    // reaching past it stay, the older snapshot goes.
    const c2 = buildCatalog([...objects, snap(G2, 23, 5300)]);
    const p = planRetention(c2, 5350);
    assert.deepEqual(p.snapshots.map((s) => [s.generation, s.txid]), [[G1, 1], [G1, 9], [G2, 20]]);
    assert.deepEqual(p.segments.map((s) => [s.generation, s.lastTxid]), [[G1, 5], [G1, 9]]);
    const rest = buildCatalog(objects.filter((o) => ![...p.snapshots, ...p.segments].some((e) => e.key === o.key)).concat(snap(G2, 23, 5300)));
    assert.deepEqual(planRestore(rest, { kind: 'time', timeMs: 5350 }).snapshot.txid, 23);
  });

  it('in a generation spanning the cut-off, only what precedes the base snapshot goes', () => {
    const p = planRetention(buildCatalog(objects), 1850, G1);
    assert.deepEqual(p.snapshots.map((s) => s.txid), [1]);
    assert.deepEqual(p.segments.map((s) => s.lastTxid), [5, 9]);
  });

  it('drops whole generations older than the window, never the newest', () => {
    const p = planRetention(c, 10_000);
    const keys = new Set([...p.snapshots, ...p.segments].map((e) => e.key));
    assert.ok(keys.has(snapshotKey(G1, 9, 1800)));
    assert.ok(!keys.has(snapshotKey(G2, 20, 5000)));
    assert.ok(!keys.has(segmentKey(G2, 21, 25, 5100, 5500)));
  });

  it('keeps a protected generation', () => {
    const p = planRetention(c, 10_000, G1);
    assert.ok(!p.snapshots.some((s) => s.txid === 9));
  });

  it('deletes nothing when the window covers everything', () => {
    const p = planRetention(c, 0);
    assert.equal(p.snapshots.length + p.segments.length, 0);
  });

  it('knows the first moment anything becomes deletable (so an idle agent need not LIST)', () => {
    const deletes = (cat: typeof c, k: number, protect?: string): boolean => {
      const p = planRetention(cat, k, protect);
      return p.snapshots.length + p.segments.length > 0;
    };
    // Brute force over every millisecond of the catalogs' span.
    const bruteForce = (cat: typeof c, protect?: string): number | undefined => {
      for (let k = 0; k <= 7000; k++) if (deletes(cat, k, protect)) return k;
      return undefined;
    };
    const onlyG2 = buildCatalog(objects.filter((o) => o.key.includes(G2)));
    for (const [cat, protect] of [[c, undefined], [c, G1], [buildCatalog([...objects, snap(G2, 23, 5300)]), G2], [onlyG2, G2]] as const) {
      assert.equal(nextRetentionKeepFrom(cat, protect), bruteForce(cat, protect));
    }
    // One snapshot and its segments: nothing ever goes.
    assert.equal(nextRetentionKeepFrom(buildCatalog([snap(G2, 20, 5000), seg(G2, 21, 25, 5100, 5500)])), undefined);
    assert.equal(nextRetentionKeepFrom(buildCatalog([])), undefined);
  });
});

describe('planRestore with overlapping segments', () => {
  it('prefers the segment that reaches furthest', () => {
    const c = buildCatalog([snap(G1, 1, 1000), seg(G1, 2, 5, 1100, 1400), seg(G1, 2, 9, 1100, 1800), seg(G1, 6, 7, 1500, 1600)]);
    const p = planRestore(c, { kind: 'txid', txid: 9 });
    assert.deepEqual(p.segments.map((s) => [s.firstTxid, s.lastTxid]), [[2, 9]]);
  });
});
