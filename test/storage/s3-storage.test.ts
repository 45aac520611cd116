import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { createServer } from 'node:http';
import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Readable } from 'node:stream';
import { after, before, describe, it } from 'node:test';

import { isPitrError } from '../../src/errors.js';
import { openStorage, parseReplicaUrl } from '../../src/storage/open-storage.js';
import { isRetryable, partSizeFor, S3Storage } from '../../src/storage/s3/s3-storage.js';
import type { S3StorageOptions } from '../../src/storage/s3/s3-storage.js';
import { BlackHoleProxy } from './black-hole-proxy.js';
import { assertCode, storageConformance } from './conformance.js';
import { startS3Server } from './s3-server.js';
import type { S3TestServer } from './s3-server.js';

const server: S3TestServer = await startS3Server({ bucket: 'pitr-conformance' });
after(() => server.close());

let prefixes = 0;
/** A prefix no other test uses, so tests share one bucket without seeing each other's objects. */
function freshPrefix(label = 't'): string {
  prefixes++;
  return `${label}-${prefixes}-${randomBytes(4).toString('hex')}`;
}

function clientOn(srv: S3TestServer, opts: Partial<S3StorageOptions> = {}): S3Storage {
  return new S3Storage({
    bucket: srv.bucket,
    prefix: freshPrefix(),
    endpoint: srv.endpoint,
    credentials: srv.credentials,
    ...opts,
  });
}

/** Every command the client sends (one entry per attempt), with the headers it went out with. */
interface Sent {
  command: string;
  input: Record<string, unknown>;
  headers: Record<string, string>;
  query: Record<string, unknown>;
}

function recordRequests(client: S3Storage): Sent[] {
  const seen: Sent[] = [];
  client.client.middlewareStack.add(
    (next, context) => async (args) => {
      const request = args.request as { headers?: Record<string, string>; query?: Record<string, unknown> };
      seen.push({
        command: context.commandName ?? '?',
        input: args.input as Record<string, unknown>,
        headers: { ...request.headers },
        query: { ...request.query },
      });
      return next(args);
    },
    { step: 'finalizeRequest', name: 'pitrTestRecorder' },
  );
  return seen;
}

async function sha256Of(stream: Readable): Promise<{ hex: string; size: number }> {
  const h = createHash('sha256');
  let size = 0;
  for await (const chunk of stream) {
    h.update(chunk as Buffer);
    size += (chunk as Buffer).length;
  }
  return { hex: h.digest('hex'), size };
}

storageConformance(
  'S3Storage on s3rver',
  async () => ({ client: clientOn(server), cleanup: async () => undefined }),
  async () => ({ client: clientOn(server, { bucket: 'pitr-no-such-bucket' }), cleanup: async () => undefined }),
);

describe('S3Storage specifics', () => {
  describe('uploads', () => {
    for (const known of [true, false]) {
      it(`uploads a 40 MiB Readable as multipart and reads it back exactly (size ${known ? 'given: 5 MiB parts' : 'unknown: 8 MiB parts'})`, async () => {
        const c = clientOn(server);
        const seen = recordRequests(c);
        try {
          const written = createHash('sha256');
          async function* produce(): AsyncGenerator<Buffer> {
            // Odd chunk sizes, so part boundaries fall inside chunks.
            for (let left = 40 * 1024 * 1024; left > 0;) {
              const chunk = randomBytes(Math.min(left, 999_983));
              written.update(chunk);
              left -= chunk.length;
              yield chunk;
            }
          }
          await c.put('big/40mib', Readable.from(produce()), known ? { size: 40 * 1024 * 1024 } : {});
          const read = await sha256Of(await c.getStream('big/40mib'));
          assert.equal(read.size, 40 * 1024 * 1024);
          assert.equal(read.hex, written.digest('hex'));
          const commands = seen.map((r) => r.command);
          assert.equal(commands.filter((n) => n === 'UploadPartCommand').length, known ? 8 : 5);
          assert.equal(commands.filter((n) => n === 'CompleteMultipartUploadCommand').length, 1);
          assert.equal(commands.filter((n) => n === 'PutObjectCommand').length, 0);
        } finally {
          await c.close();
        }
      });
    }

    it('sizes parts to fit S3\'s 10,000 parts, never below its 5 MiB minimum', () => {
      const MiB = 1024 * 1024;
      assert.equal(partSizeFor(undefined), 8 * MiB);
      assert.equal(partSizeFor(0), 5 * MiB);
      assert.equal(partSizeFor(48 * 1024 * MiB), 5 * MiB);
      for (const size of [50 * 1024 * MiB, 100 * 1024 * MiB + 1, 5 * 1024 * 1024 * MiB]) {
        const part = partSizeFor(size);
        assert.ok(Math.ceil(size / part) <= 10_000, `${size} bytes in ${part}-byte parts`);
        assert.ok(Math.ceil(size / (part - MiB)) > 10_000, 'the smallest whole-MiB part that fits');
      }
    });

    it('uploads a 256 MiB stream without holding it in memory', async () => {
      const c = clientOn(server);
      const size = 256 * 1024 * 1024;
      const base = process.memoryUsage().rss;
      let peak = base;
      const sampler = setInterval(() => {
        peak = Math.max(peak, process.memoryUsage().rss);
      }, 10);
      try {
        const chunk = randomBytes(1024 * 1024);
        async function* produce(): AsyncGenerator<Buffer> {
          for (let i = 0; i < size / chunk.length; i++) {
            const b = Buffer.from(chunk);
            b.writeUInt32LE(i, 0);
            yield b;
          }
        }
        await c.put('big/256mib', Readable.from(produce()), { size });
        clearInterval(sampler);
        assert.equal((await c.list('big/'))[0]?.size, size);
        // Parts in flight and garbage not yet collected cost tens of MiB; a body held whole
        // would cost all 256 MiB.
        assert.ok(peak - base < 160 * 1024 * 1024, `RSS grew by ${Math.round((peak - base) / 2 ** 20)} MiB`);
      } finally {
        clearInterval(sampler);
        await c.close();
      }
    });

    it('puts byte bodies up to 16 MiB in one request and larger ones as multipart', async () => {
      const c = clientOn(server);
      const seen = recordRequests(c);
      try {
        const small = randomBytes(16 * 1024 * 1024);
        const large = randomBytes(20 * 1024 * 1024 + 5);
        await c.put('small', new Uint8Array(small));
        assert.deepEqual(seen.map((r) => r.command), ['PutObjectCommand']);
        await c.put('large', new Uint8Array(large));
        assert.equal(seen.filter((r) => r.command === 'UploadPartCommand').length, 5, '5 MiB parts for a 20 MiB body');
        assert.ok(Buffer.from(await c.get('small')).equals(small));
        assert.ok(Buffer.from(await c.get('large')).equals(large));
      } finally {
        await c.close();
      }
    });

    it('refuses a body whose length differs from size, storing nothing', async () => {
      const c = clientOn(server);
      try {
        await assertCode(c.put('short', Readable.from([Buffer.alloc(10)]), { size: 11 }), 'STORAGE_IO');
        await assertCode(c.put('long', new Uint8Array(12), { size: 11 }), 'STORAGE_IO');
        assert.deepEqual(await c.list(''), []);
      } finally {
        await c.close();
      }
    });

    it('aborting a multipart put after parts went up raises ABORTED and leaves no object', async () => {
      const c = clientOn(server);
      const seen = recordRequests(c);
      const ac = new AbortController();
      let release!: () => void;
      const gate = new Promise<void>((r) => {
        release = r;
      });
      const partsUp = new Promise<void>((resolve) => {
        c.client.middlewareStack.add(
          (next, context) => async (args) => {
            const out = await next(args);
            if (context.commandName === 'UploadPartCommand') resolve();
            return out;
          },
          { step: 'initialize', name: 'pitrTestPartDone' },
        );
      });
      async function* body(): AsyncGenerator<Buffer> {
        // More than one part, then a stall: the upload is in progress and cannot finish.
        for (let i = 0; i < 9; i++) yield randomBytes(1024 * 1024);
        await gate;
        yield randomBytes(1024 * 1024);
      }
      try {
        const pending = c.put('aborted/big', Readable.from(body()), { signal: ac.signal });
        await partsUp;
        ac.abort();
        await assertCode(pending, 'ABORTED');
        release();
        await assertCode(c.get('aborted/big'), 'OBJECT_NOT_FOUND');
        assert.deepEqual(await c.list(''), []);
        assert.ok(!seen.some((r) => r.command === 'CompleteMultipartUploadCommand'));
      } finally {
        release();
        await c.close();
      }
    });

    it('sends sse and storage-class with every upload', async () => {
      const c = clientOn(server, { serverSideEncryption: 'AES256', storageClass: 'REDUCED_REDUNDANCY' });
      const seen = recordRequests(c);
      try {
        await c.put('one', new Uint8Array([1]));
        await c.put('multi', Readable.from([randomBytes(9 * 1024 * 1024)]));
        const uploads = seen.filter((r) => r.command === 'PutObjectCommand' || r.command === 'CreateMultipartUploadCommand');
        assert.deepEqual(uploads.map((r) => r.command), ['PutObjectCommand', 'CreateMultipartUploadCommand']);
        for (const r of uploads) {
          assert.equal(r.headers['x-amz-server-side-encryption'], 'AES256');
          assert.equal(r.headers['x-amz-storage-class'], 'REDUCED_REDUNDANCY');
        }
        assert.deepEqual((await c.list('')).map((o) => o.key), ['multi', 'one']);
      } finally {
        await c.close();
      }
    });

    it('a storage class the store refuses is a STORAGE_IO error, not retried', async () => {
      const c = clientOn(server, { storageClass: 'NO_SUCH_CLASS' });
      const seen = recordRequests(c);
      try {
        const err = await assertCode(c.put('x', new Uint8Array([1])), 'STORAGE_IO');
        assert.match(err.message, /InvalidStorageClass/);
        assert.match(err.hint ?? '', /storage-class/);
        assert.equal(seen.length, 1);
      } finally {
        await c.close();
      }
    });
  });

  describe('listing and deleting', () => {
    it('pages through more than 1,000 keys with continuation tokens, and only under its prefix', async () => {
      const prefix = freshPrefix('many');
      const c = clientOn(server, { prefix });
      // A sibling whose prefix extends ours: "many-1-ab" must not list "many-1-abX/...".
      const sibling = clientOn(server, { prefix: `${prefix}X` });
      try {
        const keys = Array.from({ length: 2100 }, (_, i) => `k/${i}`);
        await Promise.all(keys.map((k) => c.put(k, new Uint8Array(0))));
        await sibling.put('k/0', new Uint8Array([1]));
        const seen = recordRequests(c);
        const listed = await c.list('k/');
        assert.deepEqual(listed.map((o) => o.key), [...keys].sort((a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b))));
        const pages = seen.filter((r) => r.command === 'ListObjectsV2Command');
        assert.equal(pages.length, 3);
        assert.equal(pages[0]!.query['continuation-token'], undefined);
        assert.ok(pages[1]!.query['continuation-token'], 'second page asks with a token');
        assert.equal((await c.list('')).length, 2100);
        await c.delete(keys);
        assert.deepEqual(await c.list(''), []);
        // Counted by content, not by request: s3rver answers some DeleteObjects with a 500 (it
        // races itself pruning emptied directories), which the client retries.
        const batches = new Map<string, number>();
        for (const r of seen.filter((x) => x.command === 'DeleteObjectsCommand')) {
          const objects = (r.input['Delete'] as { Objects: { Key: string }[] }).Objects;
          batches.set(objects[0]!.Key, objects.length);
        }
        assert.deepEqual([...batches.values()], [1000, 1000, 100], 'batches of 1,000');
        assert.deepEqual((await sibling.list('')).map((o) => o.key), ['k/0']);
      } finally {
        await c.close();
        await sibling.close();
      }
    });

    it('rejects keys no backend may hold, touching nothing', async () => {
      const c = clientOn(server);
      const seen = recordRequests(c);
      try {
        for (const key of ['', '/abs', 'a//b', 'a/', '../x', 'a/./b', 'a\\b', 'a\0b', '.tmp-x', 'x'.repeat(1100)]) {
          await assert.rejects(c.put(key, new Uint8Array([1])), RangeError);
          await assert.rejects(c.get(key), RangeError);
          await assert.rejects(c.getStream(key), RangeError);
          await assert.rejects(c.delete(['ok', key]), RangeError);
        }
        await assert.rejects(c.list('/x'), RangeError);
        await assert.rejects(c.get('ok', { range: { start: 5, end: 4 } }), RangeError);
        assert.deepEqual(seen, []);
      } finally {
        await c.close();
      }
    });

    it('a range starting past the end is STORAGE_IO, as for the file backend', async () => {
      const c = clientOn(server);
      try {
        await c.put('r', new Uint8Array(10));
        const err = await assertCode(c.get('r', { range: { start: 10, end: 20 } }), 'STORAGE_IO');
        assert.match(err.message, /"r"/);
      } finally {
        await c.close();
      }
    });

    it('an abort while a stream is being read destroys it with ABORTED', async () => {
      const c = clientOn(server);
      try {
        await c.put('s', new Uint8Array(randomBytes(4 * 1024 * 1024)));
        const ac = new AbortController();
        const stream = await c.getStream('s', { signal: ac.signal });
        await new Promise<void>((resolve) => stream.once('readable', () => resolve()));
        ac.abort();
        await assert.rejects(sha256Of(stream), (err: unknown) => isPitrError(err, 'ABORTED'));
      } finally {
        await c.close();
      }
    });
  });

  describe('failures and retries', () => {
    it('a stopped server gives STORAGE_IO after bounded retries; after a restart the same client works', async () => {
      const own = await startS3Server({ bucket: 'pitr-restart' });
      const c = clientOn(own, { maxAttempts: 3, baseDelayMs: 5, maxDelayMs: 20, requestTimeoutMs: 2000 });
      const seen = recordRequests(c);
      try {
        await c.put('before', new Uint8Array([1, 2]));
        await own.stop();
        seen.length = 0;
        const err = await assertCode(c.put('during', new Uint8Array([3])), 'STORAGE_IO');
        assert.equal(seen.length, 3, 'one request per attempt');
        assert.match(err.message, /"during".*after 3 attempts/);
        assert.ok(err.cause instanceof Error);
        assert.match(err.hint ?? '', /reachable/);
        await assertCode(c.get('before'), 'STORAGE_IO');
        await assertCode(c.list(''), 'STORAGE_IO');
        await assertCode(c.exists(), 'STORAGE_IO');

        await own.restart();
        assert.deepEqual([...(await c.get('before'))], [1, 2]);
        await c.put('after', new Uint8Array([4]));
        assert.deepEqual((await c.list('')).map((o) => o.key), ['after', 'before']);
      } finally {
        await c.close();
        await own.close();
      }
    });

    it('an abort during backoff ends the request at once, without another attempt', { timeout: 60_000 }, async () => {
      const own = await startS3Server({ bucket: 'pitr-abort-backoff' });
      // Backoff of up to 10 minutes: only an abort that interrupts the sleep lets this finish.
      const c = clientOn(own, { maxAttempts: 6, baseDelayMs: 600_000, maxDelayMs: 600_000 });
      const seen = recordRequests(c);
      try {
        await own.stop();
        const ac = new AbortController();
        const pending = c.get('x', { signal: ac.signal });
        while (seen.length === 0) await new Promise((r) => setTimeout(r, 10));
        ac.abort();
        await assertCode(pending, 'ABORTED');
        assert.equal(seen.length, 1);
      } finally {
        await c.close();
        await own.close();
      }
    });
  });

  describe('a store that accepts connections and never answers', () => {
    // A request timeout of 10 minutes: only the first-byte timeout can end an attempt here.
    const patient = { requestTimeoutMs: 10 * 60_000, firstByteTimeoutMs: 500, baseDelayMs: 1, maxDelayMs: 10 };

    it('an unanswered request times out at the first byte and is retried; a retry succeeds once the store answers', { timeout: 60_000 }, async () => {
      const proxy = await BlackHoleProxy.start(server.endpoint);
      const c = clientOn(server, { endpoint: proxy.endpoint, ...patient, maxAttempts: 100 });
      const seen = recordRequests(c);
      try {
        await c.put('before', new Uint8Array([1]));
        proxy.blackHole();
        seen.length = 0;
        const during = c.put('during', new Uint8Array([2]));
        // Two requests swallowed: the first attempt timed out and was retried while the store was dark.
        while (proxy.swallowed < 2) await new Promise((r) => setTimeout(r, 20));
        proxy.recover();
        await during;
        assert.ok(seen.length >= 3, `${seen.length} attempts`);
        assert.ok(seen.every((r) => r.command === 'PutObjectCommand'));
        assert.deepEqual([...(await c.get('during'))], [2]);
        assert.deepEqual((await c.list('')).map((o) => o.key), ['before', 'during']);
      } finally {
        await c.close();
        await proxy.close();
      }
    });

    it('keep-alive connections that died in an outage are not reused: the retry opens a fresh one', { timeout: 60_000 }, async () => {
      const proxy = await BlackHoleProxy.start(server.endpoint);
      // Two attempts: with a dead pooled connection tried per attempt, every one would time out.
      const c = clientOn(server, { endpoint: proxy.endpoint, ...patient, maxAttempts: 2 });
      const seen = recordRequests(c);
      try {
        // Four requests at once leave four connections in the client's pool.
        await Promise.all([0, 1, 2, 3].map((i) => c.put(`warm/${i}`, new Uint8Array([i]))));
        assert.equal(proxy.connections, 4);
        // Every pooled connection dies for good, and the store answers new ones at once.
        proxy.blackHole();
        proxy.recover({ keepDead: true });
        seen.length = 0;
        assert.deepEqual([...(await c.get('warm/2'))], [2]);
        assert.equal(proxy.swallowed, 1, 'one request was sent on a dead connection');
        assert.equal(seen.length, 2, 'one attempt on a dead pooled connection, one on a fresh one');
        assert.equal(proxy.connections, 5);
      } finally {
        await c.close();
        await proxy.close();
      }
    });
  });

  describe('against a scripted server', () => {
    // A plain HTTP server that answers as told: for failure modes s3rver cannot produce.
    let fake: Server;
    let endpoint = '';
    let handler: (req: IncomingMessage, res: ServerResponse) => void = (_req, res) => res.end();
    let inFlight = 0;
    let maxInFlight = 0;
    let requests = 0;

    before(async () => {
      fake = createServer((req, res) => {
        requests++;
        inFlight++;
        maxInFlight = Math.max(maxInFlight, inFlight);
        res.once('close', () => inFlight--);
        req.resume();
        handler(req, res);
      });
      await new Promise<void>((resolve) => fake.listen(0, '127.0.0.1', resolve));
      endpoint = `http://127.0.0.1:${(fake.address() as AddressInfo).port}`;
    });
    after(async () => {
      fake.closeAllConnections();
      await new Promise((resolve) => fake.close(resolve));
    });

    const reset = (h: typeof handler): void => {
      handler = h;
      requests = 0;
      maxInFlight = 0;
    };
    const s3Error = (status: number, code: string) => (_req: IncomingMessage, res: ServerResponse): void => {
      res.writeHead(status, { 'content-type': 'application/xml' });
      res.end(`<?xml version="1.0" encoding="UTF-8"?><Error><Code>${code}</Code><Message>scripted ${code}</Message></Error>`);
    };
    const fast = { maxAttempts: 4, baseDelayMs: 1, maxDelayMs: 5, requestTimeoutMs: 5000 };
    const fakeClient = (opts: Partial<S3StorageOptions> = {}): S3Storage =>
      new S3Storage({ bucket: 'bkt', endpoint, credentials: { accessKeyId: 'a', secretAccessKey: 'b' }, ...fast, ...opts });

    for (const [status, code] of [[503, 'SlowDown'], [500, 'InternalError'], [429, 'TooManyRequests'], [408, 'RequestTimeout'], [400, 'RequestTimeout']] as const) {
      it(`retries ${status} ${code} up to maxAttempts, then STORAGE_IO`, async () => {
        reset(s3Error(status, code));
        const c = fakeClient();
        try {
          const err = await assertCode(c.get('k'), 'STORAGE_IO');
          assert.equal(requests, 4);
          assert.match(err.message, new RegExp(code));
        } finally {
          await c.close();
        }
      });
    }

    for (const [status, code] of [[403, 'AccessDenied'], [400, 'InvalidArgument'], [409, 'OperationAborted']] as const) {
      it(`never retries ${status} ${code}`, async () => {
        reset(s3Error(status, code));
        const c = fakeClient();
        try {
          const err = await assertCode(c.put('k', new Uint8Array([1])), 'STORAGE_IO');
          assert.equal(requests, 1);
          assert.ok(err.hint);
          if (status === 403) assert.match(err.hint ?? '', /credentials/);
        } finally {
          await c.close();
        }
      });
    }

    it('recovers when a retry succeeds', async () => {
      reset((req, res) => {
        if (requests < 3) return s3Error(503, 'SlowDown')(req, res);
        res.writeHead(200, { 'content-length': '3', etag: '"x"' });
        res.end('abc');
      });
      const c = fakeClient();
      try {
        assert.equal(Buffer.from(await c.get('k')).toString(), 'abc');
        assert.equal(requests, 3);
      } finally {
        await c.close();
      }
    });

    it('retries each request of a multipart upload on its own', async () => {
      const failedOnce = new Set<string>();
      const parts = new Map<number, number>();
      reset((req, res) => {
        const url = new URL(req.url ?? '/', 'http://x');
        const xml = (body: string): void => {
          res.writeHead(200, { 'content-type': 'application/xml' });
          res.end(`<?xml version="1.0" encoding="UTF-8"?>${body}`);
        };
        // Every kind of request fails once first: create, each part, complete.
        const kind = `${req.method} ${[...url.searchParams.keys()].sort().join(',')} ${url.searchParams.get('partNumber') ?? ''}`;
        if (!failedOnce.has(kind)) {
          failedOnce.add(kind);
          return s3Error(503, 'SlowDown')(req, res);
        }
        if (req.method === 'POST' && url.searchParams.has('uploads')) {
          return xml('<InitiateMultipartUploadResult><Bucket>bkt</Bucket><Key>k</Key><UploadId>u1</UploadId></InitiateMultipartUploadResult>');
        }
        if (req.method === 'PUT' && url.searchParams.has('partNumber')) {
          let n = 0;
          req.removeAllListeners('data');
          req.on('data', (d: Buffer) => {
            n += d.length;
          });
          req.on('end', () => {
            parts.set(Number(url.searchParams.get('partNumber')), n);
            res.writeHead(200, { etag: `"p${url.searchParams.get('partNumber')}"` });
            res.end();
          });
          return;
        }
        if (req.method === 'POST' && url.searchParams.has('uploadId')) {
          return xml('<CompleteMultipartUploadResult><Bucket>bkt</Bucket><Key>k</Key><ETag>"x-3"</ETag></CompleteMultipartUploadResult>');
        }
        res.writeHead(500);
        res.end();
      });
      const c = fakeClient();
      try {
        await c.put('k', Readable.from([randomBytes(20 * 1024 * 1024)]));
        assert.deepEqual([...parts.entries()].sort((a, b) => a[0] - b[0]), [[1, 8 << 20], [2, 8 << 20], [3, 4 << 20]]);
        // create + 3 parts + complete, each once failed and once answered.
        assert.equal(requests, 10);
      } finally {
        await c.close();
      }
    });

    it('times out an attempt that gets no answer, and retries it', async () => {
      reset(() => undefined); // never answers
      const c = fakeClient({ maxAttempts: 2, firstByteTimeoutMs: 200 });
      try {
        const err = await assertCode(c.list(''), 'STORAGE_IO');
        assert.equal(requests, 2);
        assert.match(err.message, /no response within 200 ms/);
        assert.match(err.hint ?? '', /first-byte-timeout/);
      } finally {
        await c.close();
        fake.closeAllConnections();
      }
    });

    it('a download that keeps moving is cut by no timeout, however long it takes', async () => {
      const body = Buffer.alloc(12 * 1024, 7);
      reset((_req, res) => {
        res.writeHead(200, { 'content-length': String(body.length), etag: '"x"' });
        // 12 chunks 250 ms apart: longer in all than either timeout, never idle for as long.
        let sent = 0;
        const timer = setInterval(() => {
          res.write(body.subarray(sent, sent + 1024));
          sent += 1024;
          if (sent >= body.length) {
            clearInterval(timer);
            res.end();
          }
        }, 250);
        res.once('close', () => clearInterval(timer));
      });
      const c = fakeClient({ maxAttempts: 3, firstByteTimeoutMs: 1000, requestTimeoutMs: 2000 });
      try {
        assert.ok(Buffer.from(await c.get('slow')).equals(body));
        assert.equal(requests, 1);
      } finally {
        await c.close();
      }
    });

    it('an upload on a slow uplink is not cut by the first-byte timeout while its last bytes drain', async () => {
      const size = 16 * 1024 * 1024;
      let received = 0;
      reset((req, res) => {
        // The store takes the body in at 5 MiB/s, like a slow uplink: the client hands its last
        // few MiB to loopback's socket buffers (its request is "sent") well before the store has
        // them, and waits for an answer while they drain. Nothing else holds the answer back.
        req.removeAllListeners('data');
        let nextPause = 512 * 1024;
        req.on('data', (d: Buffer) => {
          received += d.length;
          if (received >= nextPause) {
            nextPause += 512 * 1024;
            req.pause();
            setTimeout(() => req.resume(), 100);
          }
        });
        req.on('end', () => {
          res.writeHead(200, { etag: '"x"' });
          res.end();
        });
      });
      const c = fakeClient({ maxAttempts: 3, firstByteTimeoutMs: 200, requestTimeoutMs: 20_000 });
      try {
        await c.put('slow', new Uint8Array(size));
        assert.equal(requests, 1);
        assert.equal(received, size);
      } finally {
        await c.close();
      }
    });

    it('keeps at most maxConcurrency requests in flight', async () => {
      const held: ServerResponse[] = [];
      reset((_req, res) => {
        held.push(res);
      });
      const c = fakeClient({ maxConcurrency: 3 });
      try {
        const gets = Array.from({ length: 12 }, (_, i) => c.get(`k${i}`));
        for (let answered = 0; answered < 12; answered++) {
          while (held.length === 0) await new Promise((r) => setTimeout(r, 5));
          const res = held.shift()!;
          res.writeHead(200, { 'content-length': '1' });
          res.end('z');
        }
        await Promise.all(gets);
        assert.equal(requests, 12);
        assert.equal(maxInFlight, 3);
      } finally {
        await c.close();
      }
    });

    it('an abort while waiting for a permit gives ABORTED and sends nothing', async () => {
      const held: ServerResponse[] = [];
      reset((_req, res) => {
        held.push(res);
      });
      const c = fakeClient({ maxConcurrency: 1 });
      try {
        const first = c.get('first');
        while (held.length === 0) await new Promise((r) => setTimeout(r, 5));
        const ac = new AbortController();
        const second = c.get('second', { signal: ac.signal });
        ac.abort();
        await assertCode(second, 'ABORTED');
        held[0]!.writeHead(200, { 'content-length': '1' });
        held[0]!.end('z');
        await first;
        assert.equal(requests, 1);
      } finally {
        await c.close();
      }
    });

    it('exists() is false for 404, true for 200, and STORAGE_IO for 403', async () => {
      const c = fakeClient();
      try {
        reset((_req, res) => {
          res.writeHead(404);
          res.end();
        });
        assert.equal(await c.exists(), false);
        reset((_req, res) => {
          res.writeHead(200);
          res.end();
        });
        assert.equal(await c.exists(), true);
        reset((_req, res) => {
          res.writeHead(403);
          res.end();
        });
        await assertCode(c.exists(), 'STORAGE_IO');
        assert.equal(requests, 1);
      } finally {
        await c.close();
      }
    });
  });

  describe('configuration', () => {
    it('openStorage builds an S3Storage with every URL parameter reaching the client', async () => {
      const input = 's3://my-bucket/db/app?endpoint=http://127.0.0.1:9&region=eu-west-3&force-path-style=false' +
        '&sse=aws:kms&sse-kms-key-id=alias/pitr&storage-class=STANDARD_IA&first-byte-timeout=1.5s&request-timeout=2m';
      const storage = await openStorage(input);
      try {
        assert.ok(storage instanceof S3Storage);
        const s = storage.settings;
        assert.equal(s.bucket, 'my-bucket');
        assert.equal(s.prefix, 'db/app');
        assert.equal(s.region, 'eu-west-3');
        assert.equal(s.endpoint, 'http://127.0.0.1:9');
        assert.equal(s.forcePathStyle, false);
        assert.equal(s.serverSideEncryption, 'aws:kms');
        assert.equal(s.sseKmsKeyId, 'alias/pitr');
        assert.equal(s.storageClass, 'STANDARD_IA');
        assert.equal(s.firstByteTimeoutMs, 1500);
        assert.equal(s.requestTimeoutMs, 120_000);
        assert.equal(storage.url, parseReplicaUrl(input).url);
        const config = storage.client.config;
        assert.equal(await config.region(), 'eu-west-3');
        assert.equal(config.forcePathStyle, false);
        assert.equal(await config.requestChecksumCalculation(), 'WHEN_REQUIRED');
        assert.equal(await config.responseChecksumValidation(), 'WHEN_REQUIRED');
        const ep = await config.endpoint!();
        assert.equal(`${ep.protocol}//${ep.hostname}:${ep.port}`, 'http://127.0.0.1:9');
      } finally {
        await storage.close();
      }
    });

    it('defaults: path style with a custom endpoint, env for region and endpoint, us-east-1, AWS checksums', async () => {
      const parse = (u: string) => {
        const p = parseReplicaUrl(u);
        assert.equal(p.scheme, 's3');
        return p.scheme === 's3' ? p : (undefined as never);
      };
      const custom = S3Storage.fromReplicaUrl(parse('s3://bkt/p?endpoint=http://127.0.0.1:9'), { env: {} });
      assert.equal(custom.settings.forcePathStyle, true);
      assert.equal(custom.settings.region, 'us-east-1');
      assert.equal(custom.client.config.forcePathStyle, true);

      const fromEnv = S3Storage.fromReplicaUrl(parse('s3://bkt/p'), {
        env: { AWS_DEFAULT_REGION: 'ap-south-1', AWS_ENDPOINT_URL: 'http://127.0.0.2:9' },
      });
      assert.equal(fromEnv.settings.region, 'ap-south-1');
      assert.equal(fromEnv.settings.endpoint, 'http://127.0.0.2:9');
      assert.equal(fromEnv.settings.forcePathStyle, true);
      const envPrecedence = S3Storage.fromReplicaUrl(parse('s3://bkt/p'), {
        env: { AWS_REGION: 'eu-north-1', AWS_DEFAULT_REGION: 'ap-south-1', AWS_ENDPOINT_URL_S3: 'http://s3.example:1', AWS_ENDPOINT_URL: 'http://other:2' },
      });
      assert.equal(envPrecedence.settings.region, 'eu-north-1');
      assert.equal(envPrecedence.settings.endpoint, 'http://s3.example:1');
      const urlWins = S3Storage.fromReplicaUrl(parse('s3://bkt/p?region=us-west-2&force-path-style=true'), {
        env: { AWS_REGION: 'eu-north-1' },
      });
      assert.equal(urlWins.settings.region, 'us-west-2');
      assert.equal(urlWins.settings.forcePathStyle, true);

      const aws = S3Storage.fromReplicaUrl(parse('s3://bkt'), { env: {} });
      assert.equal(aws.settings.endpoint, undefined);
      assert.equal(aws.settings.forcePathStyle, false);
      assert.equal(aws.settings.checksumsWhenRequired, false);
      assert.equal(aws.settings.maxAttempts, 6);
      assert.equal(aws.settings.maxConcurrency, 8);
      assert.equal(aws.settings.requestTimeoutMs, 30_000);
      assert.equal(aws.settings.firstByteTimeoutMs, 5_000);
      assert.equal(await aws.client.config.requestChecksumCalculation(), 'WHEN_SUPPORTED');
      assert.equal(aws.url, 's3://bkt');
      for (const s of [custom, fromEnv, envPrecedence, urlWins, aws]) await s.close();
    });

    it('rejects unusable parameter values with REPLICA_URL_INVALID', async () => {
      for (const [input, why] of [
        ['s3://bkt/p?sse=DES', /sse must be/],
        ['s3://bkt/p?sse-kms-key-id=k', /needs sse=aws:kms/],
        ['s3://bkt/p?sse=AES256&sse-kms-key-id=k', /needs sse=aws:kms/],
        ['s3://bkt/p?storage-class=standard', /not a storage class/],
        ['s3://bkt/p?storage-class=GLACIER', /archive restore/],
        ['s3://bkt/p?storage-class=DEEP_ARCHIVE', /archive restore/],
        ['s3://bkt/p?storageclass=STANDARD', /unknown parameter/],
        ['s3://bkt/p?first-byte-timeout=5', /first-byte-timeout must be a duration/],
        ['s3://bkt/p?first-byte-timeout=0', /first-byte-timeout must be a duration/],
        ['s3://bkt/p?request-timeout=soon', /request-timeout must be a duration/],
      ] as const) {
        await assert.rejects(openStorage(input), (err: unknown) => {
          assert.ok(isPitrError(err, 'REPLICA_URL_INVALID'), String(err));
          assert.match(err.message, why);
          assert.ok(err.hint);
          return true;
        });
      }
    });

    it('rejects invalid limits as programming errors', () => {
      assert.throws(() => new S3Storage({ bucket: 'b', maxAttempts: 0 }), RangeError);
      assert.throws(() => new S3Storage({ bucket: 'b', maxConcurrency: 0 }), RangeError);
      assert.throws(() => new S3Storage({ bucket: 'b', requestTimeoutMs: Number.NaN }), RangeError);
      assert.throws(() => new S3Storage({ bucket: 'b', firstByteTimeoutMs: 0 }), RangeError);
    });

    it('classifies failures for retry', () => {
      const withStatus = (status: number, name = 'X') => Object.assign(new Error('m'), { name, $metadata: { httpStatusCode: status } });
      assert.equal(isRetryable(withStatus(503, 'SlowDown')), true);
      assert.equal(isRetryable(withStatus(500)), true);
      assert.equal(isRetryable(withStatus(429)), true);
      assert.equal(isRetryable(withStatus(408)), true);
      assert.equal(isRetryable(withStatus(404, 'NoSuchKey')), false);
      assert.equal(isRetryable(withStatus(403, 'AccessDenied')), false);
      assert.equal(isRetryable(withStatus(400, 'InvalidArgument')), false);
      assert.equal(isRetryable(Object.assign(new Error('connect ECONNREFUSED'), { code: 'ECONNREFUSED' })), true);
      assert.equal(isRetryable(Object.assign(new Error('x'), { name: 'TimeoutError' })), true);
      assert.equal(isRetryable(new TypeError('bad')), false);
    });
  });
});
