import { after, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { computeStatus, DAY_MS, replicaStatus } from '../../src/monitor/status.js';
import { HEARTBEAT_KEY, decodeHeartbeat, encodeHeartbeat, readHeartbeat, writeHeartbeat, type Heartbeat } from '../../src/monitor/heartbeat.js';
import { segmentKey, snapshotKey } from '../../src/segment/object-names.js';
import { isPitrError } from '../../src/errors.js';
import { FileStorage } from '../../src/storage/file/file-storage.js';
import type { ObjectInfo } from '../../src/storage/storage-client.js';

const G1 = '0000000000010000';
const G2 = '0000000000020000';
const NOW = 1_800_000_000_000;
const H = 3_600_000;

function obj(key: string, size: number, modifiedAgoMs: number): ObjectInfo {
  return { key, size, lastModified: new Date(NOW - modifiedAgoMs) };
}

// G1: old, fully restorable; G2 (newest): snapshot at 20, segments 21..25 and 26..30, then a
// hole (31..33 missing), then a snapshot at 34 and segment 35..40.
const T = NOW - 10 * H;
const objects: ObjectInfo[] = [
  obj(snapshotKey(G1, 1, T - 5 * DAY_MS), 1000, 5 * DAY_MS),
  obj(segmentKey(G1, 2, 9, T - 5 * DAY_MS + 10, T - 5 * DAY_MS + 90), 100, 5 * DAY_MS),
  obj(snapshotKey(G2, 20, T), 2000, 2 * DAY_MS),
  obj(segmentKey(G2, 21, 25, T + 100, T + 500), 50, 30 * H),
  obj(segmentKey(G2, 26, 30, T + 600, T + 1000), 60, 10 * H),
  obj(snapshotKey(G2, 34, T + 3 * H), 2100, 7 * H),
  obj(segmentKey(G2, 35, 40, T + 3 * H + 10, T + 4 * H), 70, 6 * H),
];
const LATEST_TIME = T + 4 * H; // NOW - 6h

function heartbeat(over: Partial<Heartbeat> = {}): Heartbeat {
  return { version: 1, time: NOW - 60_000, generation: G2, txid: 40, commitTime: LATEST_TIME, agent: { host: 'db1', pid: 4242, version: '0.1.0' }, ...over };
}

describe('computeStatus', () => {
  it('reports the latest point, the windows of the latest generation, snapshots and sizes', () => {
    const s = computeStatus('file:///r', objects, null, NOW);
    assert.equal(s.empty, false);
    assert.deepEqual(s.latest, { generation: G2, txid: 40, commitTime: LATEST_TIME });
    assert.deepEqual(s.windows, [
      { firstTxid: 20, lastTxid: 30, firstTime: T, lastTime: T + 1000 },
      { firstTxid: 34, lastTxid: 40, firstTime: T + 3 * H, lastTime: T + 4 * H },
    ]);
    assert.equal(s.generations, 2);
    assert.equal(s.snapshots, 3);
    assert.equal(s.segments, 4);
    assert.equal(s.objects, objects.length);
    assert.deepEqual(s.newestSnapshot, { key: snapshotKey(G2, 34, T + 3 * H), txid: 34, commitTime: T + 3 * H, ageMs: 7 * H });
    assert.equal(s.bytes, 1000 + 100 + 2000 + 50 + 60 + 2100 + 70);
    // Older than 24 h: the G1 objects, G2's first snapshot and its first segment (30 h).
    assert.equal(s.bytesDayAgo, 1000 + 100 + 2000 + 50);
    assert.equal(s.bytesChange24h, 60 + 2100 + 70);
  });

  it('without a heartbeat, the age is the time since the newest commit', () => {
    const s = computeStatus('file:///r', objects, null, NOW);
    assert.equal(s.confirmedBy, 'commit');
    assert.equal(s.confirmedAt, LATEST_TIME);
    assert.equal(s.ageMs, 6 * H);
  });

  it('a heartbeat that vouches for the newest txid makes the age the time since the heartbeat', () => {
    const s = computeStatus('file:///r', objects, heartbeat(), NOW);
    assert.equal(s.confirmedBy, 'heartbeat');
    assert.equal(s.confirmedAt, NOW - 60_000);
    assert.equal(s.ageMs, 60_000);
    assert.deepEqual(s.notes, []);
  });

  it('a heartbeat behind the newest txid does not count: the agent did not see the replica current', () => {
    const s = computeStatus('file:///r', objects, heartbeat({ txid: 39 }), NOW);
    assert.equal(s.confirmedBy, 'commit');
    assert.equal(s.ageMs, 6 * H);
    assert.match(s.notes.join('\n'), /older than the newest txid 40/);
  });

  it('a heartbeat ahead of the listing still counts, with a note', () => {
    const s = computeStatus('file:///r', objects, heartbeat({ txid: 41 }), NOW);
    assert.equal(s.confirmedBy, 'heartbeat');
    assert.match(s.notes.join('\n'), /names txid 41/);
  });

  it('a clock ahead of ours never gives a negative age', () => {
    const s = computeStatus('file:///r', objects, heartbeat({ time: NOW + 5000 }), NOW);
    assert.equal(s.ageMs, 0);
  });

  it('an empty replica has no latest point and no age', () => {
    const s = computeStatus('file:///r', [], heartbeat(), NOW);
    assert.equal(s.empty, true);
    assert.equal(s.latest, null);
    assert.equal(s.ageMs, null);
    assert.equal(s.confirmedBy, null);
    assert.equal(s.bytes, 0);
    assert.equal(s.bytesChange24h, 0);
    assert.deepEqual(s.windows, []);
  });

  it('segments without a snapshot are not restorable: empty, with a note', () => {
    const s = computeStatus('file:///r', [obj(segmentKey(G2, 21, 25, T, T + 5), 50, H)], null, NOW);
    assert.equal(s.empty, true);
    assert.equal(s.bytes, 50);
    assert.match(s.notes.join('\n'), /no snapshot/);
  });

  it('the latest point is in the newest generation, restorable or not: never an older one in its place', () => {
    // G2's base snapshot is gone: its newest txid is what the replica holds, and it is not restorable.
    const onlyG1 = objects.slice(0, 2).concat([obj(segmentKey(G2, 21, 25, T, T + 5), 50, H)]);
    const s = computeStatus('file:///r', onlyG1, null, NOW);
    assert.equal(s.latest?.generation, G2);
    assert.equal(s.latest?.txid, 25);
    assert.equal(s.restorable, false);
    assert.equal(s.empty, false);
    assert.match(s.problems.join('\n'), new RegExp(`generation ${G2} has no base snapshot`));
    assert.deepEqual(s.orphans.map((o) => o.firstTxid), [21]);
  });

  it('a heartbeat naming a newer generation of which nothing is left: not restorable, said so', () => {
    const s = computeStatus('file:///r', objects.slice(0, 2), heartbeat(), NOW);
    assert.equal(s.latest?.generation, G2);
    assert.equal(s.restorable, false);
    assert.match(s.problems.join('\n'), /holds no object of it/);
  });

  it('a healthy replica has no problems; a hole in the middle is one, the latest point still restorable', () => {
    const s = computeStatus('file:///r', objects, heartbeat(), NOW);
    assert.equal(s.restorable, true);
    assert.equal(s.proven, true);
    assert.deepEqual(s.holes.map((h) => [h.firstTxid, h.lastTxid]), [[31, 33]]);
    assert.equal(s.problems.length, 1);
    const healthy = computeStatus('file:///r', objects.filter((o) => !o.key.includes(G2) || o.key.includes('0000000000000014')), null, NOW);
    assert.deepEqual(healthy.problems, []);
  });
});

describe('heartbeat', () => {
  it('round-trips', () => {
    const h = heartbeat();
    const bytes = encodeHeartbeat(h);
    assert.ok(new TextDecoder().decode(bytes).endsWith('\n'));
    assert.deepEqual(decodeHeartbeat(bytes), h);
  });

  it('encode refuses what decode would refuse', () => {
    assert.throws(() => encodeHeartbeat(heartbeat({ generation: 'XYZ' })), RangeError);
    assert.throws(() => encodeHeartbeat(heartbeat({ txid: -1 })), RangeError);
  });

  for (const [what, text] of [
    ['not JSON', '{"version":1,'],
    ['not an object', '[1,2]'],
    ['a newer version', '{"version":2}'],
    ['a bad generation', JSON.stringify({ ...heartbeat(), generation: 'nope' })],
    ['a fractional time', JSON.stringify({ ...heartbeat(), time: 1.5 })],
    ['no agent', JSON.stringify({ ...heartbeat(), agent: undefined })],
  ] as const) {
    it(`refuses ${what} as OBJECT_CORRUPT naming the object`, () => {
      assert.throws(
        () => decodeHeartbeat(new TextEncoder().encode(text)),
        (err: unknown) => isPitrError(err, 'OBJECT_CORRUPT') && err.message.includes(HEARTBEAT_KEY),
      );
    });
  }

  it('refuses invalid UTF-8', () => {
    assert.throws(() => decodeHeartbeat(new Uint8Array([0x7b, 0xff, 0x7d])), (err: unknown) => isPitrError(err, 'OBJECT_CORRUPT'));
  });
});

describe('replicaStatus and readHeartbeat on a file replica', () => {
  const dirs: string[] = [];
  after(async () => {
    for (const d of dirs) await rm(d, { recursive: true, force: true });
  });
  async function storage(create = true): Promise<FileStorage> {
    const d = await mkdtemp(join(tmpdir(), 'pitr-status-'));
    dirs.push(d);
    const root = create ? join(d, 'replica') : join(d, 'missing');
    return new FileStorage(root, pathToFileURL(root).href);
  }

  it('readHeartbeat: null when absent, the heartbeat once written', async () => {
    const s = await storage();
    assert.equal(await readHeartbeat(s), null);
    await writeHeartbeat(s, heartbeat());
    assert.deepEqual(await readHeartbeat(s), heartbeat());
    await writeHeartbeat(s, heartbeat({ txid: 41 }));
    assert.equal((await readHeartbeat(s))?.txid, 41);
  });

  it('a missing replica is REPLICA_NOT_FOUND; an unreadable heartbeat is a note, not an error', async () => {
    const missing = await storage(false);
    await assert.rejects(replicaStatus(missing), (err: unknown) => isPitrError(err, 'REPLICA_NOT_FOUND'));

    const s = await storage();
    await s.put(snapshotKey(G2, 20, T), new Uint8Array(10));
    await writeFile(join(new URL(s.url).pathname, HEARTBEAT_KEY), 'garbage');
    const st = await replicaStatus(s, { now: NOW });
    assert.equal(st.heartbeat, null);
    assert.equal(st.confirmedBy, 'commit');
    assert.equal(st.latest?.txid, 20);
    assert.match(st.notes.join('\n'), /heartbeat heartbeat\.json is corrupt/);
  });
});
