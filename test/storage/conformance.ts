import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import { describe, it } from 'node:test';

import { isPitrError } from '../../src/errors.js';
import type { ErrorCode } from '../../src/errors.js';
import type { StorageClient } from '../../src/storage/storage-client.js';

export interface StorageFixture {
  client: StorageClient;
  cleanup: () => Promise<void>;
}

/**
 * The behaviour every StorageClient must show, as node:test tests. `make` returns a client on a
 * fresh, empty, existing replica root (a temp directory, a new prefix in a bucket); each test
 * gets its own. `makeMissing`, when given, returns a client whose root does not exist, for
 * exists(); without it that test is skipped.
 */
export function storageConformance(
  name: string,
  make: () => Promise<StorageFixture>,
  makeMissing?: () => Promise<StorageFixture>,
): void {
  const withClient = async (fn: (client: StorageClient) => Promise<void>): Promise<void> => {
    const { client, cleanup } = await make();
    try {
      await fn(client);
    } finally {
      await client.close();
      await cleanup();
    }
  };

  describe(`storage conformance: ${name}`, () => {
    describe('put and get', () => {
      it('round-trips a Uint8Array body', () =>
        withClient(async (c) => {
          const body = randomBytes(1000);
          await c.put('a/b/object', new Uint8Array(body));
          assertBytes(await c.get('a/b/object'), body);
        }));

      it('round-trips a Readable body made of many chunks, with and without size', () =>
        withClient(async (c) => {
          const chunks = Array.from({ length: 20 }, (_, i) => randomBytes(1000 + i));
          const whole = Buffer.concat(chunks);
          await c.put('streamed/no-size', Readable.from(chunks));
          await c.put('streamed/sized', Readable.from(chunks), { size: whole.length });
          assertBytes(await c.get('streamed/no-size'), whole);
          assertBytes(await c.get('streamed/sized'), whole);
        }));

      it('takes a body that lends one reused buffer as every chunk (put is done with a chunk before it asks for the next)', () =>
        withClient(async (c) => {
          // Over three 5 MiB parts for S3, so the multipart path sees it too.
          const whole = randomBytes(12 * 1024 * 1024 + 123);
          async function* lend(): AsyncGenerator<Uint8Array> {
            const lent = Buffer.alloc(1024 * 1024 + 7);
            for (let at = 0; at < whole.length; at += lent.length) {
              const n = Math.min(lent.length, whole.length - at);
              whole.copy(lent, 0, at, at + n);
              yield lent.subarray(0, n);
              // Resumed: put asked for the next chunk. A put still holding this one stores garbage.
              lent.fill(0xee);
            }
          }
          await c.put('lent/sized', lend(), { size: whole.length });
          await c.put('lent/unsized', lend());
          assertBytes(await c.get('lent/sized'), whole);
          assertBytes(await c.get('lent/unsized'), whole);
        }));

      it('a put aborted before it starts stores nothing and releases a streamed body', () =>
        withClient(async (c) => {
          const ac = new AbortController();
          ac.abort(new Error('stop'));
          const stream = Readable.from([Buffer.from('x')]);
          await assertCode(c.put('aborted/stream', stream, { signal: ac.signal }), 'ABORTED');
          assert.equal(stream.destroyed, true);
          let finished = false;
          async function* gen(): AsyncGenerator<Uint8Array> {
            try {
              yield Buffer.from('y');
            } finally {
              finished = true;
            }
          }
          const it = gen();
          await assertCode(c.put('aborted/iterator', it, { signal: ac.signal }), 'ABORTED');
          assert.deepEqual(await it.next(), { done: true, value: undefined });
          assert.equal(finished, false, 'never started, so nothing to unwind');
          await assertCode(c.put('aborted/bytes', new Uint8Array(1), { signal: ac.signal }), 'ABORTED');
          assert.deepEqual(await c.list('aborted/'), []);
        }));

      it('stores an empty object', () =>
        withClient(async (c) => {
          await c.put('empty', new Uint8Array(0));
          await c.put('empty-stream', Readable.from([]));
          assert.equal((await c.get('empty')).length, 0);
          assert.equal((await c.get('empty-stream')).length, 0);
          assert.equal((await readAll(await c.getStream('empty'))).length, 0);
          const listed = await c.list('empty');
          assert.deepEqual(listed.map((o) => [o.key, o.size]), [['empty', 0], ['empty-stream', 0]]);
        }));

      it('round-trips a 5 MiB object', () =>
        withClient(async (c) => {
          const body = randomBytes(5 * 1024 * 1024);
          await c.put('big/5mib', new Uint8Array(body));
          assertBytes(await c.get('big/5mib'), body);
          assert.equal((await c.list('big/'))[0]?.size, body.length);
        }));

      it('streams a 64 MiB object in and out without holding it whole', () =>
        withClient(async (c) => {
          const chunkSize = 1024 * 1024;
          const chunks = 64;
          const written = createHash('sha256');
          async function* produce(): AsyncGenerator<Buffer> {
            for (let i = 0; i < chunks; i++) {
              const chunk = randomBytes(chunkSize);
              written.update(chunk);
              yield chunk;
            }
          }
          await c.put('big/64mib', Readable.from(produce()));
          const read = createHash('sha256');
          let size = 0;
          for await (const chunk of await c.getStream('big/64mib')) {
            read.update(chunk as Buffer);
            size += (chunk as Buffer).length;
          }
          assert.equal(size, chunkSize * chunks);
          assert.equal(read.digest('hex'), written.digest('hex'));
        }));

      it('accepts a repeated put of the same content (retries are idempotent)', () =>
        withClient(async (c) => {
          const body = randomBytes(300);
          await c.put('k', new Uint8Array(body));
          await c.put('k', new Uint8Array(body));
          assertBytes(await c.get('k'), body);
          assert.deepEqual(keysOf(await c.list('')), ['k']);
        }));

      it('keeps keys with the punctuation object names use', () =>
        withClient(async (c) => {
          const key = 'gen/0001_a-b.c+d=e,f~g@h:i/seg-00000001-00000002.pitr';
          await c.put(key, new Uint8Array([1, 2, 3]));
          assertBytes(await c.get(key), Buffer.from([1, 2, 3]));
          assert.deepEqual(keysOf(await c.list('gen/')), [key]);
        }));
    });

    describe('range get', () => {
      const body = Buffer.from(Array.from({ length: 1000 }, (_, i) => (i * 7) % 256));

      it('returns the first byte, a middle slice, the last byte, and the whole object', () =>
        withClient(async (c) => {
          await c.put('r', new Uint8Array(body));
          assertBytes(await c.get('r', { range: { start: 0, end: 0 } }), body.subarray(0, 1));
          assertBytes(await c.get('r', { range: { start: 100, end: 199 } }), body.subarray(100, 200));
          assertBytes(await c.get('r', { range: { start: 999, end: 999 } }), body.subarray(999));
          assertBytes(await c.get('r', { range: { start: 0, end: 999 } }), body);
        }));

      it('clamps an end past the object like HTTP ranges', () =>
        withClient(async (c) => {
          await c.put('r', new Uint8Array(body));
          assertBytes(await c.get('r', { range: { start: 990, end: 5000 } }), body.subarray(990));
        }));

      it('reads a range of a 5 MiB object', () =>
        withClient(async (c) => {
          const big = randomBytes(5 * 1024 * 1024);
          await c.put('big', new Uint8Array(big));
          const start = 4 * 1024 * 1024 + 17;
          assertBytes(await c.get('big', { range: { start, end: start + 65535 } }), big.subarray(start, start + 65536));
        }));
    });

    describe('list', () => {
      const keys = [
        'generations/abc/segments/00000001-00000009',
        'generations/abc/segments/00000010-00000019',
        'generations/abc/snapshots/00000001',
        'generations/abd/snapshots/00000001',
        'generations/b/x',
        'generationsX',
        'other/deep/er/still/object',
        'top',
      ];
      const seed = async (c: StorageClient): Promise<void> => {
        for (const key of keys) await c.put(key, new Uint8Array(Buffer.from(key)));
      };

      it('lists everything under an empty prefix, sorted, with sizes and times', () =>
        withClient(async (c) => {
          const before = Date.now();
          await seed(c);
          const listed = await c.list('');
          assert.deepEqual(keysOf(listed), keys);
          for (const info of listed) {
            assert.equal(info.size, Buffer.byteLength(info.key));
            assert.ok(info.lastModified instanceof Date);
            // Generous: clocks of remote stores and coarse filesystem timestamps differ a little.
            assert.ok(Math.abs(info.lastModified.getTime() - before) < 10 * 60 * 1000);
          }
        }));

      it('lists an exact directory', () =>
        withClient(async (c) => {
          await seed(c);
          assert.deepEqual(keysOf(await c.list('generations/abc/')), keys.slice(0, 3));
          assert.deepEqual(keysOf(await c.list('generations/abc/segments/')), keys.slice(0, 2));
        }));

      it('matches a prefix ending mid-name', () =>
        withClient(async (c) => {
          await seed(c);
          assert.deepEqual(keysOf(await c.list('generations/ab')), keys.slice(0, 4));
          assert.deepEqual(keysOf(await c.list('generations/abc/segments/0000001')), [keys[1]]);
          assert.deepEqual(keysOf(await c.list('generations')), keys.slice(0, 6));
          assert.deepEqual(keysOf(await c.list('t')), ['top']);
        }));

      it('matches a full key as a prefix', () =>
        withClient(async (c) => {
          await seed(c);
          assert.deepEqual(keysOf(await c.list('generations/abc/snapshots/00000001')), [keys[2]]);
        }));

      it('lists nested directories in full', () =>
        withClient(async (c) => {
          await seed(c);
          assert.deepEqual(keysOf(await c.list('generations/')), keys.slice(0, 5));
          assert.deepEqual(keysOf(await c.list('other/')), ['other/deep/er/still/object']);
        }));

      it('returns [] when nothing matches', () =>
        withClient(async (c) => {
          assert.deepEqual(await c.list(''), []);
          await seed(c);
          assert.deepEqual(await c.list('nope/'), []);
          assert.deepEqual(await c.list('generations/c'), []);
          assert.deepEqual(await c.list('top/'), []);
          assert.deepEqual(await c.list('generations/abc/snapshots/000000019'), []);
        }));

      it('orders keys by bytes, as S3 does, not by path components', () =>
        withClient(async (c) => {
          // '-' (0x2d) < '.' (0x2e) < '/' (0x2f) < '0' (0x30): a directory walk in name order
          // would put a/b before a-b.
          // (No key is also a "directory" of another key: a file backend cannot hold 'a' and 'a/b'.)
          const odd = ['a/b', 'a0', 'a-b', 'a.b', 'a/a/z'];
          for (const key of odd) await c.put(key, new Uint8Array([1]));
          assert.deepEqual(keysOf(await c.list('')), ['a-b', 'a.b', 'a/a/z', 'a/b', 'a0']);
          assert.deepEqual(keysOf(await c.list('a')), ['a-b', 'a.b', 'a/a/z', 'a/b', 'a0']);
          assert.deepEqual(keysOf(await c.list('a/')), ['a/a/z', 'a/b']);
        }));

      it('returns more than 1,000 keys complete and sorted', () =>
        withClient(async (c) => {
          // Unpadded numbers so that key order differs from numeric order.
          const many = Array.from({ length: 1200 }, (_, i) => `many/${i}`);
          await forEachLimit(many, 16, (key) => c.put(key, new Uint8Array(Buffer.from(key))));
          await c.put('manyX', new Uint8Array([1]));
          const listed = await c.list('many/');
          assert.equal(listed.length, many.length);
          assert.deepEqual(keysOf(listed), [...many].sort(byteOrder));
          assert.equal((await c.list('many/1')).length, many.filter((k) => k.startsWith('many/1')).length);
        }));
    });

    describe('delete', () => {
      it('deletes existing keys and leaves the others', () =>
        withClient(async (c) => {
          await c.put('d/one', new Uint8Array([1]));
          await c.put('d/two', new Uint8Array([2]));
          await c.put('d/sub/three', new Uint8Array([3]));
          await c.delete(['d/one', 'd/sub/three']);
          await assertCode(c.get('d/one'), 'OBJECT_NOT_FOUND');
          await assertCode(c.get('d/sub/three'), 'OBJECT_NOT_FOUND');
          assertBytes(await c.get('d/two'), Buffer.from([2]));
          assert.deepEqual(keysOf(await c.list('')), ['d/two']);
        }));

      it('accepts missing keys and an empty list', () =>
        withClient(async (c) => {
          await c.put('kept', new Uint8Array([1]));
          await c.delete(['missing', 'no/such/key']);
          await c.delete([]);
          await c.delete(['kept', 'kept']);
          assert.deepEqual(await c.list(''), []);
        }));

      it('deletes more than 1,000 keys in one call', () =>
        withClient(async (c) => {
          const many = Array.from({ length: 1100 }, (_, i) => `del/${String(i).padStart(5, '0')}`);
          await forEachLimit(many, 16, (key) => c.put(key, new Uint8Array([1])));
          await c.delete(many);
          assert.deepEqual(await c.list(''), []);
        }));
    });

    describe('missing objects', () => {
      it('get, ranged get and getStream raise OBJECT_NOT_FOUND naming the key', () =>
        withClient(async (c) => {
          const err = await assertCode(c.get('nope/missing'), 'OBJECT_NOT_FOUND');
          assert.match(err.message, /nope\/missing/);
          assert.ok(err.message.includes(c.url), 'message names the replica');
          assert.ok(err.hint, 'error carries a hint');
          await assertCode(c.get('nope/missing', { range: { start: 0, end: 10 } }), 'OBJECT_NOT_FOUND');
          await assertCode(c.getStream('nope/missing'), 'OBJECT_NOT_FOUND');
        }));

      it('a prefix of other keys is not an object', () =>
        withClient(async (c) => {
          await c.put('dir/child', new Uint8Array([1]));
          await assertCode(c.get('dir'), 'OBJECT_NOT_FOUND');
          await assertCode(c.getStream('dir'), 'OBJECT_NOT_FOUND');
          await c.delete(['dir']);
          assertBytes(await c.get('dir/child'), Buffer.from([1]));
        }));
    });

    describe('atomicity', () => {
      it('an object is invisible until its put completes, and no temp objects show', () =>
        withClient(async (c) => {
          const gate = deferred();
          const started = deferred();
          const first = randomBytes(256 * 1024);
          const second = randomBytes(256 * 1024);
          async function* body(): AsyncGenerator<Buffer> {
            yield first;
            // Runs when the client asks for more: the first chunk has been taken.
            started.resolve();
            await gate.promise;
            yield second;
          }
          await c.put('done/already', new Uint8Array([1]));
          const pending = c.put('slow/object', Readable.from(body()));
          try {
            await started.promise;
            assert.deepEqual(keysOf(await c.list('')), ['done/already']);
            await assertCode(c.get('slow/object'), 'OBJECT_NOT_FOUND');
          } finally {
            gate.resolve();
          }
          await pending;
          assert.deepEqual(keysOf(await c.list('')), ['done/already', 'slow/object']);
          assertBytes(await c.get('slow/object'), Buffer.concat([first, second]));
        }));

      it('concurrent puts leave exactly the put keys, each whole', () =>
        withClient(async (c) => {
          const bodies = new Map(Array.from({ length: 24 }, (_, i) => [`c/${i}` as string, randomBytes(64 * 1024 + i)] as const));
          await forEachLimit([...bodies.keys()], 8, (key) => c.put(key, Readable.from(chunksOf(bodies.get(key)!, 8192))));
          const listed = await c.list('');
          assert.deepEqual(keysOf(listed), [...bodies.keys()].sort(byteOrder));
          for (const info of listed) assert.equal(info.size, bodies.get(info.key)!.length);
          for (const [key, body] of bodies) assertBytes(await c.get(key), body);
        }));
    });

    describe('abort', () => {
      it('a put aborted mid-stream raises ABORTED and leaves no object', () =>
        withClient(async (c) => {
          const ac = new AbortController();
          const gate = deferred();
          const started = deferred();
          async function* body(): AsyncGenerator<Buffer> {
            yield randomBytes(128 * 1024);
            started.resolve();
            await gate.promise;
            yield randomBytes(128 * 1024);
          }
          const pending = c.put('aborted/object', Readable.from(body()), { signal: ac.signal });
          await started.promise;
          ac.abort();
          try {
            await assertCode(pending, 'ABORTED');
          } finally {
            gate.resolve();
          }
          await assertCode(c.get('aborted/object'), 'OBJECT_NOT_FOUND');
          assert.deepEqual(await c.list(''), []);
        }));

      it('an already-aborted signal stops put, get and list', () =>
        withClient(async (c) => {
          await c.put('there', new Uint8Array([1]));
          const signal = AbortSignal.abort();
          await assertCode(c.put('never', new Uint8Array([1]), { signal }), 'ABORTED');
          await assertCode(c.put('never', Readable.from([Buffer.from('x')]), { signal }), 'ABORTED');
          await assertCode(c.get('there', { signal }), 'ABORTED');
          await assertCode(c.list('', { signal }), 'ABORTED');
          assert.deepEqual(keysOf(await c.list('')), ['there']);
        }));
    });

    describe('exists', () => {
      it('is true for an existing root, even an empty one', () =>
        withClient(async (c) => {
          assert.equal(await c.exists(), true);
        }));

      it('is false for a missing root', { skip: makeMissing === undefined ? 'no makeMissing factory' : false }, async () => {
        const { client, cleanup } = await makeMissing!();
        try {
          assert.equal(await client.exists(), false);
        } finally {
          await client.close();
          await cleanup();
        }
      });
    });
  });
}

/** Await `p`, expect a PitrError with `code`, and return it for further checks. */
export async function assertCode(p: Promise<unknown>, code: ErrorCode) {
  try {
    await p;
  } catch (err) {
    if (isPitrError(err, code)) return err;
    assert.fail(`expected PitrError ${code}, got ${err instanceof Error ? `${err.name}: ${err.message}` : String(err)}`);
  }
  assert.fail(`expected PitrError ${code}, but it succeeded`);
}

function assertBytes(actual: Uint8Array, expected: Uint8Array): void {
  assert.ok(actual instanceof Uint8Array, 'result is a Uint8Array');
  assert.equal(actual.length, expected.length, 'length');
  // One comparison instead of a per-byte deepEqual diff, which is unreadable and slow on MiBs.
  assert.ok(Buffer.from(actual.buffer, actual.byteOffset, actual.length).equals(expected), 'content');
}

function keysOf(infos: readonly { key: string }[]): string[] {
  return infos.map((i) => i.key);
}

function byteOrder(a: string, b: string): number {
  return Buffer.compare(Buffer.from(a), Buffer.from(b));
}

async function readAll(stream: Readable): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const chunk of stream) parts.push(chunk as Buffer);
  return Buffer.concat(parts);
}

function chunksOf(buf: Buffer, size: number): Buffer[] {
  const out: Buffer[] = [];
  for (let i = 0; i < buf.length; i += size) out.push(buf.subarray(i, i + size));
  return out;
}

async function forEachLimit<T>(items: readonly T[], limit: number, fn: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < items.length) await fn(items[next++]!);
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
}

function deferred(): { promise: Promise<void>; resolve: () => void } {
  let resolve!: () => void;
  const promise = new Promise<void>((r) => {
    resolve = r;
  });
  return { promise, resolve };
}
