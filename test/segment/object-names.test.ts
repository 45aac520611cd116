import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import {
  GENERATIONS_PREFIX,
  generationTime,
  newGenerationId,
  objectKey,
  parseObjectKey,
  segmentKey,
  segmentsPrefix,
  snapshotKey,
  snapshotsPrefix,
  type ObjectName,
} from '../../src/segment/object-names.js';

const GEN = '018f2c3a4b5c9e1d';

describe('object names', () => {
  it('have the documented shape', () => {
    assert.equal(snapshotKey(GEN, 255, 1), `generations/${GEN}/snapshots/00000000000000ff-0000000000000001.snap`);
    assert.equal(
      segmentKey(GEN, 1, 16, 1_700_000_000_000, 1_700_000_000_123),
      `generations/${GEN}/segments/0000000000000001-0000000000000010-0000018bcfe56800-0000018bcfe5687b.seg`,
    );
    assert.ok(snapshotKey(GEN, 1, 1).startsWith(GENERATIONS_PREFIX));
    assert.ok(snapshotKey(GEN, 1, 1).startsWith(snapshotsPrefix(GEN)));
    assert.ok(segmentKey(GEN, 1, 1, 1, 1).startsWith(segmentsPrefix(GEN)));
  });

  it('round trip through parseObjectKey', () => {
    const names: ObjectName[] = [
      { kind: 'snapshot', generation: GEN, txid: 0, commitTime: 0 },
      { kind: 'snapshot', generation: GEN, txid: Number.MAX_SAFE_INTEGER, commitTime: 1_763_800_000_000 },
      { kind: 'segment', generation: GEN, firstTxid: 1, lastTxid: 1, firstTime: 5, lastTime: 5, catchUp: false },
      { kind: 'segment', generation: 'ffffffffffffffff', firstTxid: 2 ** 40, lastTxid: 2 ** 41, firstTime: 1, lastTime: 2 ** 50, catchUp: false },
      { kind: 'segment', generation: GEN, firstTxid: 7, lastTxid: 7, firstTime: 9, lastTime: 9, catchUp: true },
    ];
    for (const n of names) assert.deepEqual(parseObjectKey(objectKey(n)), n);
  });

  it('sort lexically in numeric order', () => {
    const values = [0, 1, 9, 10, 15, 16, 255, 256, 4095, 65536, 2 ** 32 - 1, 2 ** 32, 2 ** 40 + 3, Number.MAX_SAFE_INTEGER];
    const snaps = values.map((v) => snapshotKey(GEN, v, 7));
    assert.deepEqual([...snaps].sort(), snaps);
    const segs = values.filter((v) => v > 0).map((v) => segmentKey(GEN, v, v, 100, 100));
    assert.deepEqual([...segs].sort(), segs);
    // same first txid: ordered by last txid
    const sameFirst = [segmentKey(GEN, 5, 5, 1, 1), segmentKey(GEN, 5, 6, 1, 1), segmentKey(GEN, 5, 300, 1, 1)];
    assert.deepEqual([...sameFirst].sort(), sameFirst);
    // generations created later sort later
    const g1 = newGenerationId(1_700_000_000_000);
    const g2 = newGenerationId(1_700_000_000_001);
    assert.ok(snapshotKey(g1, 999, 999) < snapshotKey(g2, 0, 0));
  });

  it('a catch-up step is one txid at one time, and says so in its key', () => {
    assert.ok(segmentKey(GEN, 7, 7, 9, 9, true).endsWith('.catchup.seg'));
    assert.throws(() => segmentKey(GEN, 7, 8, 9, 9, true), RangeError);
    assert.throws(() => segmentKey(GEN, 7, 7, 9, 10, true), RangeError);
    assert.equal(parseObjectKey(segmentKey(GEN, 7, 8, 9, 9).replace(/\.seg$/, '.catchup.seg')), null);
    assert.equal(parseObjectKey(segmentKey(GEN, 7, 7, 9, 9).replace(/\.seg$/, '.catchupx.seg')), null);
  });

  it('foreign or malformed keys parse to null', () => {
    const good = segmentKey(GEN, 1, 2, 3, 4);
    const foreign = [
      '',
      'README.md',
      'generations/',
      `generations/${GEN}/`,
      `generations/${GEN}/segments/`,
      `${good}.tmp`,
      `/${good}`,
      `prefix/${good}`,
      good.replace('.seg', '.snap'),
      good.replace('segments', 'snapshots'),
      good.toUpperCase(),
      good.replace(GEN, GEN.slice(0, 15)),
      good.replace(GEN, GEN + '0'),
      good.replace('0000000000000001-', '000000000000001-'),
      good.replace('0000000000000001-', '00000000000000001-'),
      good.replace('0000000000000001-', '000000000000000g-'),
      segmentKey(GEN, 2, 2, 3, 4).replace('0000000000000002-0000000000000002', '0000000000000003-0000000000000002'),
      `generations/${GEN}/segments/0000000000000000-0000000000000001-0000000000000000-0000000000000000.seg`,
      `generations/${GEN}/segments/0000000000000001-0000000000000001-0000000000000005-0000000000000004.seg`,
      `generations/${GEN}/snapshots/ffffffffffffffff-0000000000000000.snap`,
      `generations/${GEN}/snapshots/0000000000000001-0000000000000000.snap/extra`,
      `generations/${GEN}/snapshots/0000000000000001.snap`,
      `generations/${GEN}/wal/0000000000000001-0000000000000000.snap`,
    ];
    for (const key of foreign) assert.equal(parseObjectKey(key), null, key);
  });

  it('key builders refuse values that would not round trip', () => {
    assert.throws(() => snapshotKey('ABCDEF0123456789', 1, 1), RangeError);
    assert.throws(() => snapshotKey(GEN, -1, 1), RangeError);
    assert.throws(() => snapshotKey(GEN, 1.5, 1), RangeError);
    assert.throws(() => snapshotKey(GEN, 2 ** 53, 1), RangeError);
    assert.throws(() => segmentKey(GEN, 0, 1, 1, 1), RangeError);
    assert.throws(() => segmentKey(GEN, 2, 1, 1, 1), RangeError);
    assert.throws(() => segmentKey(GEN, 1, 1, 2, 1), RangeError);
  });

  it('newGenerationId: 12 hex of time + 4 random hex', () => {
    const now = 1_763_800_000_123;
    const ids = new Set<string>();
    for (let i = 0; i < 50; i++) {
      const id = newGenerationId(now);
      assert.match(id, /^[0-9a-f]{16}$/);
      assert.equal(id.slice(0, 12), now.toString(16).padStart(12, '0'));
      assert.equal(generationTime(id), now);
      ids.add(id);
    }
    assert.ok(ids.size > 1, 'the random part varies');
    assert.match(newGenerationId(), /^[0-9a-f]{16}$/);
    assert.ok(Math.abs(generationTime(newGenerationId()) - Date.now()) < 60_000);
    assert.throws(() => newGenerationId(-1), RangeError);
    assert.throws(() => newGenerationId(2 ** 48), RangeError);
  });
});
