import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';

import { openStorage, parseReplicaUrl, type S3ReplicaUrl } from '../../src/storage/open-storage.js';
import { SharedResources } from '../../src/storage/registry.js';
import { S3ClientPool } from '../../src/storage/s3/client-pool.js';
import { S3Storage } from '../../src/storage/s3/s3-storage.js';
import { storageConformance } from './conformance.js';
import { startMotoServer, type MotoServer } from './moto-server.js';
import { startS3Server, type S3TestServer } from './s3-server.js';

const text = (b: Uint8Array): string => Buffer.from(b).toString('utf8');

describe('S3 client sharing (one SDK client per store)', () => {
  let server: S3TestServer;
  before(async () => {
    server = await startS3Server({ bucket: 'pitr-shared' });
  });
  after(() => server.close());

  const on = (prefix: string, clients: S3ClientPool, extra: Partial<ConstructorParameters<typeof S3Storage>[0]> = {}): S3Storage =>
    new S3Storage({ bucket: server.bucket, prefix, endpoint: server.endpoint, credentials: server.credentials, clients, ...extra });

  it('two prefixes on one store share one client; closing one leaves the other working', async () => {
    const pool = new S3ClientPool();
    const a = on('tenants/a', pool);
    const b = on('tenants/b', pool);
    let bClosed = false;
    try {
      assert.equal(a.client, b.client, 'one SDK client for both');
      assert.equal(pool.size, 1);

      await a.put('x', Buffer.from('from a'));
      await b.put('x', Buffer.from('from b'));
      assert.equal(text(await a.get('x')), 'from a');
      assert.equal(text(await b.get('x')), 'from b');
      assert.deepEqual((await a.list('')).map((o) => o.key), ['x']);
      assert.deepEqual((await b.list('')).map((o) => o.key), ['x']);

      await a.close();
      await a.close(); // a second close must not take b's share
      assert.equal(pool.size, 1, 'the client lives on while b uses it');
      await b.put('y', Buffer.from('after a closed'));
      assert.equal(text(await b.get('y')), 'after a closed');
      assert.deepEqual((await b.list('')).map((o) => o.key), ['x', 'y']);

      // A storage opened after the others closed and reopened still shares the live client.
      const c = on('tenants/c', pool);
      assert.equal(c.client, b.client);
      await c.close();
      assert.equal(pool.size, 1);

      await b.close();
      bClosed = true;
      assert.equal(pool.size, 0, 'the last close destroys the client');

      // A new share after that gets a fresh client that works.
      const d = on('tenants/a', pool);
      try {
        assert.notEqual(d.client, b.client);
        assert.equal(text(await d.get('x')), 'from a');
      } finally {
        await d.close();
      }
    } finally {
      await a.close();
      if (!bClosed) await b.close();
    }
  });

  it('different credentials, regions or timeouts get clients of their own', async () => {
    const pool = new S3ClientPool();
    const base = on('p', pool);
    const otherKeys = on('p', pool, { credentials: { accessKeyId: 'S3RVER', secretAccessKey: 'other' } });
    const otherRegion = on('p', pool, { region: 'eu-west-1' });
    const otherTimeout = on('p', pool, { firstByteTimeoutMs: 1234 });
    // Retries and concurrency are the storage's own, not the client's.
    const sameAgain = on('q', pool, { maxAttempts: 2, maxConcurrency: 3 });
    try {
      const clients = new Set([base.client, otherKeys.client, otherRegion.client, otherTimeout.client]);
      assert.equal(clients.size, 4);
      assert.equal(sameAgain.client, base.client);
      assert.equal(pool.size, 4);
    } finally {
      for (const s of [base, otherKeys, otherRegion, otherTimeout, sameAgain]) await s.close();
    }
    assert.equal(pool.size, 0);
  });

  it('a pool with storeConcurrency bounds the requests through a client across its storages', async () => {
    const pool = new S3ClientPool({ storeConcurrency: 2 });
    const a = on('bound/a', pool);
    const b = on('bound/b', pool);
    let inFlight = 0;
    let peak = 0;
    // On the shared client, so it sees both storages' requests; the initialize step runs inside an attempt.
    a.client.middlewareStack.add(
      (next) => async (args) => {
        inFlight++;
        peak = Math.max(peak, inFlight);
        try {
          return await next(args);
        } finally {
          inFlight--;
        }
      },
      { step: 'initialize', name: 'pitrTestInFlight' },
    );
    try {
      await Promise.all(Array.from({ length: 12 }, (_, i) => (i % 2 === 0 ? a : b).put(`k${i}`, Buffer.from(String(i)))));
      assert.ok(peak <= 2, `peak ${peak} requests in flight`);
      assert.equal((await a.list('')).length + (await b.list('')).length, 12);
    } finally {
      await a.close();
      await b.close();
    }
  });

  it('without a pool a storage has a client of its own', async () => {
    const a = new S3Storage({ bucket: server.bucket, prefix: 'own/a', endpoint: server.endpoint, credentials: server.credentials });
    const b = new S3Storage({ bucket: server.bucket, prefix: 'own/b', endpoint: server.endpoint, credentials: server.credentials });
    try {
      assert.notEqual(a.client, b.client);
    } finally {
      await a.close();
      await b.close();
    }
  });

  it('openStorage shares clients among the replicas opened with the same SharedResources', async () => {
    const saved = { id: process.env['AWS_ACCESS_KEY_ID'], secret: process.env['AWS_SECRET_ACCESS_KEY'] };
    // openStorage takes credentials from the environment, like the CLI.
    process.env['AWS_ACCESS_KEY_ID'] = server.credentials.accessKeyId;
    process.env['AWS_SECRET_ACCESS_KEY'] = server.credentials.secretAccessKey;
    const shared = new SharedResources();
    const opened: S3Storage[] = [];
    try {
      for (const prefix of ['tenants/a', 'tenants/b']) {
        const s = await openStorage(server.url(prefix), { shared });
        assert.ok(s instanceof S3Storage);
        opened.push(s);
      }
      const isolated = await openStorage(server.url('tenants/c'), { shared: new SharedResources() });
      assert.ok(isolated instanceof S3Storage);
      opened.push(isolated);
      const [a, b, c] = opened as [S3Storage, S3Storage, S3Storage];
      assert.equal(a.client, b.client);
      assert.notEqual(a.client, c.client);
      await a.put('k', Buffer.from('a'));
      await a.close();
      await b.put('k', Buffer.from('b'));
      assert.equal(text(await b.get('k')), 'b');
    } finally {
      for (const s of opened) await s.close();
      if (saved.id === undefined) delete process.env['AWS_ACCESS_KEY_ID'];
      else process.env['AWS_ACCESS_KEY_ID'] = saved.id;
      if (saved.secret === undefined) delete process.env['AWS_SECRET_ACCESS_KEY'];
      else process.env['AWS_SECRET_ACCESS_KEY'] = saved.secret;
    }
  });
});

// The conformance suite on moto, every storage through one shared pool: one storage is held open
// for the whole suite, so each test's storage shares (and closes its share of) a live client.
const moto: MotoServer = await startMotoServer({ bucket: 'pitr-conformance-moto' });
const motoPool = new S3ClientPool();
const anchor = S3Storage.fromReplicaUrl(parseReplicaUrl(moto.url('anchor')) as S3ReplicaUrl, { credentials: moto.credentials, clients: motoPool });
after(async () => {
  await anchor.close();
  await moto.close();
});
let motoPrefixes = 0;
storageConformance(
  'S3Storage on moto (shared client)',
  async () => {
    const client = S3Storage.fromReplicaUrl(parseReplicaUrl(moto.url(`c-${++motoPrefixes}`)) as S3ReplicaUrl, { credentials: moto.credentials, clients: motoPool });
    assert.equal(client.client, anchor.client);
    return { client, cleanup: async () => undefined };
  },
  async () => ({
    client: S3Storage.fromReplicaUrl(parseReplicaUrl(`s3://pitr-no-such-bucket?endpoint=${moto.endpoint}&region=us-east-1`) as S3ReplicaUrl, { credentials: moto.credentials, clients: motoPool }),
    cleanup: async () => undefined,
  }),
);
