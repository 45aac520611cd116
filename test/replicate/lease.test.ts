import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { after, before, describe, it } from 'node:test';

import { isPitrError } from '../../src/errors.js';
import { createLogger } from '../../src/log.js';
import { FileStorage } from '../../src/storage/file/file-storage.js';
import { S3Storage } from '../../src/storage/s3/s3-storage.js';
import type { ConditionalStorage, StorageClient } from '../../src/storage/storage-client.js';
import { ReplicaLease } from '../../src/replicate/lease.js';
import { LEASE_KEY, newLeaseOwner } from '../../src/replicate/lease-record.js';
import { startS3Server, type S3TestServer } from '../storage/s3-server.js';
import { startMotoServer, type MotoServer } from '../storage/moto-server.js';

type Store = StorageClient & ConditionalStorage;
const log = createLogger({ level: 'error', format: 'json' });

async function rejectsCode(p: Promise<unknown>, code: string): Promise<unknown> {
  try {
    await p;
  } catch (err) {
    assert.ok(isPitrError(err), `expected a PitrError ${code}, got ${String(err)}`);
    assert.equal(err.code, code, err.message);
    return err;
  }
  assert.fail(`expected ${code}, but it succeeded`);
}

/** Lease behaviour every backend must show. `enforced`: the store honours conditional headers. */
function leaseSuite(name: string, open: () => Promise<Store>, enforced: boolean): void {
  describe(`lease on ${name}`, () => {
    it('conditional put: create-if-absent once, replace only the version read', async () => {
      const s = await open();
      const a = await s.putConditional('obj.json', Buffer.from('a'), { ifNoneMatch: '*' });
      const got = await s.getVersioned('obj.json');
      assert.equal(Buffer.from(got.body).toString(), 'a');
      assert.equal(got.etag, a.etag);
      if (enforced) await rejectsCode(s.putConditional('obj.json', Buffer.from('x'), { ifNoneMatch: '*' }), 'PRECONDITION_FAILED');
      const b = await s.putConditional('obj.json', Buffer.from('b'), { ifMatch: got.etag });
      assert.notEqual(b.etag, a.etag);
      if (enforced) await rejectsCode(s.putConditional('obj.json', Buffer.from('c'), { ifMatch: a.etag }), 'PRECONDITION_FAILED');
      assert.equal(Buffer.from((await s.getVersioned('obj.json')).body).toString(), 'b');
    });

    if (enforced) {
      it('of many racing replace-if-match writers exactly one wins', async () => {
        const s = await open();
        const { etag } = await s.putConditional('race.json', Buffer.from('0'), { ifNoneMatch: '*' });
        const results = await Promise.allSettled(
          Array.from({ length: 8 }, (_, i) => s.putConditional('race.json', Buffer.from(String(i + 1)), { ifMatch: etag })),
        );
        assert.equal(results.filter((r) => r.status === 'fulfilled').length, 1);
        for (const r of results) if (r.status === 'rejected') assert.ok(isPitrError(r.reason, 'PRECONDITION_FAILED'), String(r.reason));
      });
    }

    it('a second agent is refused, naming the holder and its expiry', async () => {
      const s = await open();
      const first = await ReplicaLease.acquire(s, { owner: newLeaseOwner(), log });
      const err = (await rejectsCode(ReplicaLease.acquire(s, { owner: newLeaseOwner(), log }), 'REPLICA_LEASED')) as Error;
      assert.match(err.message, new RegExp(first.held!.owner.agentId));
      assert.match(err.message, /until \d{4}-\d\d-\d\dT/);
      await first.release();
    });

    it('takeover: epoch + 1, the old holder finds out at its next renewal and stops writing', async () => {
      const s = await open();
      const old = await ReplicaLease.acquire(s, { owner: newLeaseOwner(), periodMs: 300, log });
      let lostTo: string | undefined;
      old.onLost((h) => {
        lostTo = h?.owner.agentId;
      });
      await old.storage.put('before.txt', Buffer.from('ok'));
      const taker = await ReplicaLease.acquire(s, { owner: newLeaseOwner(), takeover: true, log });
      assert.equal(taker.held!.epoch, old.held!.epoch + 1);
      await old.renew();
      assert.equal(lostTo, taker.held!.owner.agentId);
      assert.equal(old.canWrite(), false);
      await rejectsCode(old.storage.put('after.txt', Buffer.from('no')), 'REPLICA_LEASE_LOST');
      await rejectsCode(old.storage.delete(['before.txt']), 'REPLICA_LEASE_LOST');
      await old.release(); // must not disturb the new holder
      // The taker writes nothing until the old holder's lease has run out by its clock.
      assert.ok(taker.quietUntil >= old.held!.expiresAt);
      await rejectsCode(taker.storage.put('early.txt', Buffer.from('no')), 'REPLICA_LEASE_LOST');
      await new Promise((r) => setTimeout(r, Math.max(0, taker.quietUntil - Date.now()) + 20));
      await taker.renew();
      assert.equal(taker.canWrite(), true);
      assert.equal(taker.lost, undefined);
      await taker.storage.put('after.txt', Buffer.from('yes'));
      await taker.release();
    });

    it('a write still under way when the lease is lost is stopped, and nothing of it lands', async () => {
      const s = await open();
      const old = await ReplicaLease.acquire(s, { owner: newLeaseOwner(), periodMs: 300, log });
      // A streamed upload that has begun and waits for its last chunk (a large snapshot, a slow link).
      let finish!: () => void;
      const last = new Promise<void>((r) => (finish = r));
      let started!: () => void;
      const begun = new Promise<void>((r) => (started = r));
      async function* body(): AsyncGenerator<Uint8Array> {
        yield Buffer.alloc(64 * 1024, 1);
        started();
        await last;
        yield Buffer.alloc(64 * 1024, 2);
      }
      const upload = old.storage.put('slow.bin', body());
      await begun;
      const taker = await ReplicaLease.acquire(s, { owner: newLeaseOwner(), takeover: true, log });
      await old.renew(); // finds the new holder: lost
      assert.equal(old.canWrite(), false);
      finish();
      await assert.rejects(upload);
      assert.deepEqual((await s.list('')).map((o) => o.key).filter((k) => k === 'slow.bin'), [], 'the stopped upload left no object');
      await old.release();
      await taker.release();
    });

    it('a released or expired lease, or one left by this state directory\'s previous agent, is taken at once', async () => {
      const s = await open();
      const a = await ReplicaLease.acquire(s, { owner: newLeaseOwner(), log });
      await a.release();
      const b = await ReplicaLease.acquire(s, { owner: newLeaseOwner(), log });
      assert.equal(b.held!.epoch, 2);
      // b "crashes" (never releases); its successor on the same state directory knows its id.
      const c = await ReplicaLease.acquire(s, { owner: newLeaseOwner(), previousAgentIds: [b.held!.owner.agentId], log });
      assert.equal(c.held!.epoch, 3);
      // c "crashes" with a short lease: once it expires anyone may take it.
      const short = await ReplicaLease.acquire(s, { owner: newLeaseOwner(), takeover: true, periodMs: 50, log });
      await new Promise((r) => setTimeout(r, 100));
      const d = await ReplicaLease.acquire(s, { owner: newLeaseOwner(), log });
      assert.equal(d.held!.epoch, short.held!.epoch + 1);
      await d.release();
    });
  });
}

const roots: string[] = [];
after(async () => {
  for (const r of roots) await rm(r, { recursive: true, force: true });
});

leaseSuite('the file backend', async () => {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'pitr-lease-'));
  roots.push(dir);
  return new FileStorage(dir, pathToFileURL(dir).href);
}, true);

let s3rver: S3TestServer;
let moto: MotoServer;
let n = 0;
before(async () => {
  s3rver = await startS3Server({ bucket: 'pitr-lease' });
  moto = await startMotoServer({ bucket: 'pitr-lease' });
});
after(async () => {
  await s3rver?.close();
  await moto?.close();
});

// s3rver ignores If-None-Match / If-Match: the lease still holds there through its re-reads,
// but the raw conditional semantics are only checked against moto.
leaseSuite('s3rver', async () => new S3Storage({ bucket: s3rver.bucket, prefix: `p${++n}`, endpoint: s3rver.endpoint, credentials: s3rver.credentials, maxAttempts: 2 }), false);
leaseSuite('moto_server (real conditional writes)', async () => new S3Storage({ bucket: moto.bucket, prefix: `p${++n}`, endpoint: moto.endpoint, credentials: moto.credentials, maxAttempts: 2 }), true);

describe('lease object', () => {
  it('lives at the replica root, outside generations/', () => {
    assert.equal(LEASE_KEY, 'lease.json');
  });
});
