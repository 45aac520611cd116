/**
 * A replica the agent could not reach at start may hold txids that the agent's new generation
 * reuses (another agent's history): the agent numbered its generation without seeing them. The
 * shipper must find out at its first contact and write nothing there, rather than give two
 * transactions one txid in one replica. Real directories for the replica and the spool.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { FileStorage } from '../../src/storage/file/file-storage.js';
import { Spool } from '../../src/replicate/spool.js';
import { Shipper } from '../../src/replicate/shipper.js';
import { silentLogger } from '../../src/log.js';
import { segmentKey, snapshotKey } from '../../src/segment/object-names.js';
import { GEN, T0, buildBody, sampleTxs } from '../segment/fixtures.js';

const PAGE = 512;
const THEIRS = '0000000000000001';
const AGENT = { host: 'test', pid: 1, version: 'test' };

function storage(dir: string): FileStorage {
  return new FileStorage(dir, pathToFileURL(dir).href);
}

describe('a replica first reached after the agent started', () => {
  it('is refused when it holds txids the agent\'s generation reuses, and gets nothing', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'pitr-overlap-'));
    const replica = storage(join(dir, 'replica'));
    const spool = new Spool(storage(join(dir, 'spool')));
    try {
      // Another history in the replica: txids 1..10.
      await replica.put(snapshotKey(THEIRS, 1, T0), new Uint8Array(1));
      await replica.put(segmentKey(THEIRS, 2, 10, T0, T0 + 9), new Uint8Array(1));
      const before = (await replica.list('')).map((o) => o.key).sort();
      // The agent's generation, numbered without seeing it: a snapshot at 5, segments after it.
      await spool.load();
      async function* body(): AsyncGenerator<Uint8Array> {
        yield new Uint8Array(PAGE);
      }
      await spool.addSnapshot(GEN, 5, T0, body());
      const txs = sampleTxs(6, 3);
      await spool.addSegment({ generation: GEN, pageSize: PAGE, firstTxid: 6, lastTxid: 8, firstTime: txs[0]!.time, lastTime: txs[2]!.time }, buildBody(PAGE, txs));
      let failed = 0;
      const shipper = new Shipper(replica, spool, {
        syncIntervalMs: 0,
        log: silentLogger,
        currentGeneration: () => GEN,
        requestSnapshot: () => {},
        onShipped: () => {},
        agent: AGENT,
        events: { uploaded: () => {}, failed: () => failed++ },
      });
      try {
        // No init() first: as for a replica that did not answer at start.
        assert.equal(await shipper.flush(Date.now() + 5_000), false, 'nothing reached the replica');
        assert.equal(shipper.isFailing(), true);
        assert.ok(failed > 0, 'counted as a failure');
        assert.deepEqual((await replica.list('')).map((o) => o.key).sort(), before, 'the replica is unchanged');
      } finally {
        shipper.stop();
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
