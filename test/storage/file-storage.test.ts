import assert from 'node:assert/strict';
import { mkdir, mkdtemp, readdir, rm, stat, symlink, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import { pathToFileURL } from 'node:url';
import { describe, it } from 'node:test';

import { isPitrError, PitrError } from '../../src/errors.js';
import { FileStorage, TEMP_PREFIX } from '../../src/storage/file/file-storage.js';
import { assertCode, storageConformance } from './conformance.js';

async function tempRoot(): Promise<{ dir: string; cleanup: () => Promise<void> }> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'pitr-file-storage-'));
  return { dir, cleanup: () => rm(dir, { recursive: true, force: true }) };
}

function storageAt(dir: string): FileStorage {
  return new FileStorage(dir, pathToFileURL(dir).href);
}

/** Every entry under `dir`, temp files included, as '/'-joined relative paths. */
async function allEntries(dir: string): Promise<string[]> {
  const entries = await readdir(dir, { recursive: true });
  return entries.map((e) => e.split(path.sep).join('/')).sort();
}

async function withStorage(fn: (s: FileStorage, dir: string) => Promise<void>): Promise<void> {
  const { dir, cleanup } = await tempRoot();
  try {
    await fn(storageAt(dir), dir);
  } finally {
    await cleanup();
  }
}

storageConformance(
  'FileStorage',
  async () => {
    const { dir, cleanup } = await tempRoot();
    return { client: storageAt(dir), cleanup };
  },
  async () => {
    const { dir, cleanup } = await tempRoot();
    return { client: storageAt(path.join(dir, 'not', 'there')), cleanup };
  },
);

// The spool's FileStorage: puts of bytes into known directories take the synchronous local path.
storageConformance(
  'FileStorage (localDisk)',
  async () => {
    const { dir, cleanup } = await tempRoot();
    return { client: new FileStorage(dir, pathToFileURL(dir).href, { localDisk: true }), cleanup };
  },
  async () => {
    const { dir, cleanup } = await tempRoot();
    const missing = path.join(dir, 'not', 'there');
    return { client: new FileStorage(missing, pathToFileURL(missing).href, { localDisk: true }), cleanup };
  },
);

describe('FileStorage specifics', () => {
  describe('key validation', () => {
    const bad = ['', '../escape', 'a/../../escape', '/etc/passwd', 'a//b', 'a/', 'a\\b', './a', 'a/./b', 'a/..',
      `${TEMP_PREFIX}x`, `a/${TEMP_PREFIX}x/b`, 'a\0b'];

    for (const key of bad) {
      it(`rejects ${JSON.stringify(key)} as a programming error, touching nothing`, () =>
        withStorage(async (s, dir) => {
          await assert.rejects(s.put(key, new Uint8Array([1])), RangeError);
          await assert.rejects(s.put(key, Readable.from([Buffer.from('x')])), RangeError);
          await assert.rejects(s.get(key), RangeError);
          await assert.rejects(s.getStream(key), RangeError);
          await assert.rejects(s.delete(['fine', key]), RangeError);
          assert.deepEqual(await allEntries(dir), []);
          assert.deepEqual(await readdir(path.dirname(dir)).then((e) => e.filter((n) => n === 'escape')), []);
        }));
    }

    it('rejects list prefixes that could escape the root, but allows a trailing slash', () =>
      withStorage(async (s) => {
        await assert.rejects(s.list('../'), RangeError);
        await assert.rejects(s.list('a/../b'), RangeError);
        await assert.rejects(s.list('/abs'), RangeError);
        await assert.rejects(s.list('a//'), RangeError);
        await assert.rejects(s.list('a\\b'), RangeError);
        assert.deepEqual(await s.list('a/'), []);
        assert.deepEqual(await s.list('a/b'), []);
      }));

    it('error names the key and the replica', () =>
      withStorage(async (s) => {
        await assert.rejects(s.get('../x'), (err: Error) => err.message.includes('"../x"') && err.message.includes(s.url));
      }));

    it('requires an absolute root', () => {
      assert.throws(() => new FileStorage('relative/dir', 'file:///x'), RangeError);
    });

    it('rejects malformed byte ranges', () =>
      withStorage(async (s) => {
        await s.put('k', new Uint8Array(10));
        await assert.rejects(s.get('k', { range: { start: 5, end: 4 } }), RangeError);
        await assert.rejects(s.get('k', { range: { start: -1, end: 4 } }), RangeError);
        await assert.rejects(s.get('k', { range: { start: 0.5, end: 4 } }), RangeError);
        await assertCode(s.get('k', { range: { start: 10, end: 20 } }), 'STORAGE_IO');
      }));
  });

  describe('readChunks', () => {
    const collect = async (chunks: AsyncIterable<Uint8Array>): Promise<{ whole: Buffer; sizes: number[]; buffers: Set<ArrayBufferLike> }> => {
      const parts: Buffer[] = [];
      const sizes: number[] = [];
      const buffers = new Set<ArrayBufferLike>();
      for await (const c of chunks) {
        parts.push(Buffer.from(c));
        sizes.push(c.length);
        buffers.add(c.buffer);
      }
      return { whole: Buffer.concat(parts), sizes, buffers };
    };

    it('yields the object in order, in chunks of chunkBytes, from two reused buffers', () =>
      withStorage(async (s) => {
        const body = Buffer.from(Array.from({ length: 10_000 }, (_, i) => (i * 7) & 0xff));
        await s.put('obj', body);
        const { whole, sizes, buffers } = await collect(s.readChunks('obj', { chunkBytes: 1024 }));
        assert.deepEqual(whole, body);
        assert.deepEqual(sizes, [...Array(9).fill(1024), 10_000 - 9 * 1024]);
        assert.equal(buffers.size, 2);
      }));

    it('an empty object yields nothing; a missing one is OBJECT_NOT_FOUND', () =>
      withStorage(async (s) => {
        await s.put('empty', new Uint8Array(0));
        assert.deepEqual((await collect(s.readChunks('empty'))).sizes, []);
        await assertCode(collect(s.readChunks('missing')), 'OBJECT_NOT_FOUND');
      }));

    it('feeds a put of another store unchanged, and a consumer may stop early', () =>
      withStorage(async (s, dir) => {
        const body = Buffer.from(Array.from({ length: 3 * 1024 * 1024 + 5 }, (_, i) => (i * 13) & 0xff));
        await s.put('src', body);
        const other = storageAt(path.join(dir, 'copy'));
        await other.put('dst', s.readChunks('src', { chunkBytes: 64 * 1024 }), { size: body.length });
        assert.deepEqual(Buffer.from(await other.get('dst')), body);
        for await (const chunk of s.readChunks('src', { chunkBytes: 1024 })) {
          assert.equal(chunk.length, 1024);
          break;
        }
      }));
  });

  describe('temp files', () => {
    it('a failing body stream leaves no temp file and reports STORAGE_IO with the cause', () =>
      withStorage(async (s, dir) => {
        const boom = new Error('source exploded');
        async function* body(): AsyncGenerator<Buffer> {
          yield Buffer.alloc(64 * 1024, 1);
          throw boom;
        }
        const err = await assertCode(s.put('gen/seg', Readable.from(body())), 'STORAGE_IO');
        assert.equal(err.cause, boom);
        assert.match(err.message, /gen\/seg/);
        assert.deepEqual((await allEntries(dir)).filter((e) => e.includes(TEMP_PREFIX)), []);
        await assertCode(s.get('gen/seg'), 'OBJECT_NOT_FOUND');
      }));

    it('a PitrError from the body passes through unchanged', () =>
      withStorage(async (s, dir) => {
        const own = new PitrError('SPOOL_CORRUPT', 'spool went bad');
        async function* body(): AsyncGenerator<Buffer> {
          yield Buffer.from('x');
          throw own;
        }
        await assert.rejects(s.put('k', Readable.from(body())), (e) => e === own);
        assert.deepEqual(await allEntries(dir), []);
      }));

    it('an object-mode body is refused without leaving a temp file', () =>
      withStorage(async (s, dir) => {
        await assertCode(s.put('k', Readable.from([{ not: 'bytes' }])), 'STORAGE_IO');
        assert.deepEqual(await allEntries(dir), []);
      }));

    it('a size that does not match the body stores nothing', () =>
      withStorage(async (s, dir) => {
        await assertCode(s.put('k', new Uint8Array(10), { size: 11 }), 'STORAGE_IO');
        await assertCode(s.put('k', Readable.from([Buffer.alloc(10)]), { size: 9 }), 'STORAGE_IO');
        assert.deepEqual(await allEntries(dir), []);
      }));

    it('an in-flight put writes a temp file beside its target that list() does not show', () =>
      withStorage(async (s, dir) => {
        let release!: () => void;
        const gate = new Promise<void>((r) => (release = r));
        let started!: () => void;
        const begun = new Promise<void>((r) => (started = r));
        async function* body(): AsyncGenerator<Buffer> {
          yield Buffer.alloc(1024, 7);
          started();
          await gate;
          yield Buffer.alloc(1024, 8);
        }
        const pending = s.put('gen/seg', Readable.from(body()));
        await begun;
        const during = await allEntries(dir);
        assert.equal(during.filter((e) => e.startsWith(`gen/${TEMP_PREFIX}`)).length, 1, during.join(', '));
        assert.deepEqual(await s.list(''), []);
        release();
        await pending;
        assert.deepEqual(await allEntries(dir), ['gen', 'gen/seg']);
      }));

    it('leftover temp files from a crash are never listed', () =>
      withStorage(async (s, dir) => {
        await s.put('gen/seg', new Uint8Array([1]));
        await writeFile(path.join(dir, 'gen', `${TEMP_PREFIX}crashed`), 'partial');
        await writeFile(path.join(dir, `${TEMP_PREFIX}crashed`), 'partial');
        assert.deepEqual((await s.list('')).map((o) => o.key), ['gen/seg']);
      }));

    it('an aborted put removes its temp file', () =>
      withStorage(async (s, dir) => {
        const ac = new AbortController();
        async function* body(): AsyncGenerator<Buffer> {
          yield Buffer.alloc(1024);
          ac.abort();
          // Never ends: the put must give up on its own.
          await new Promise(() => undefined);
        }
        await assertCode(s.put('gen/seg', Readable.from(body()), { signal: ac.signal }), 'ABORTED');
        assert.deepEqual((await allEntries(dir)).filter((e) => e.includes(TEMP_PREFIX)), []);
      }));
  });

  describe('directories', () => {
    it('put creates a missing root and its parents; exists() follows', () =>
      withStorage(async (_s, dir) => {
        const root = path.join(dir, 'new', 'replica');
        const s = storageAt(root);
        assert.equal(await s.exists(), false);
        assert.deepEqual(await s.list(''), []);
        await assertCode(s.get('x'), 'OBJECT_NOT_FOUND');
        await s.delete(['x']);
        await s.put('a/b/c', new Uint8Array([1]));
        assert.equal(await s.exists(), true);
        assert.deepEqual((await s.list('')).map((o) => o.key), ['a/b/c']);
      }));

    it('delete prunes emptied directories but keeps the root and non-empty ones', () =>
      withStorage(async (s, dir) => {
        await s.put('g/1/segments/a', new Uint8Array([1]));
        await s.put('g/1/snapshots/b', new Uint8Array([1]));
        await s.delete(['g/1/segments/a']);
        assert.deepEqual(await allEntries(dir), ['g', 'g/1', 'g/1/snapshots', 'g/1/snapshots/b']);
        await s.delete(['g/1/snapshots/b']);
        assert.deepEqual(await allEntries(dir), []);
        assert.ok((await stat(dir)).isDirectory());
        await s.put('g/1/segments/c', new Uint8Array([2]));
        assert.deepEqual((await s.list('g/')).map((o) => o.key), ['g/1/segments/c']);
      }));

    it('a key under an existing object fails with STORAGE_IO naming key, replica and cause', () =>
      withStorage(async (s) => {
        await s.put('f', new Uint8Array([1]));
        const err = await assertCode(s.put('f/x', new Uint8Array([1])), 'STORAGE_IO');
        assert.match(err.message, /"f\/x"/);
        assert.ok(err.message.includes(s.url));
        assert.ok(err.hint);
        assert.ok(err.cause instanceof Error);
        await assertCode(s.get('f/x'), 'OBJECT_NOT_FOUND');
        assert.deepEqual(await s.list('f/'), []);
      }));

    it('exists() reports a root that is a file as an I/O problem, not as missing', () =>
      withStorage(async (_s, dir) => {
        const file = path.join(dir, 'file');
        await writeFile(file, 'x');
        const err = await assertCode(storageAt(file).exists(), 'STORAGE_IO');
        assert.ok(isPitrError(err) && err.hint);
      }));

    it('symlinks and other non-regular entries are not objects', () =>
      withStorage(async (s, dir) => {
        await s.put('real', new Uint8Array([1]));
        await mkdir(path.join(dir, 'sub'));
        await symlink(path.join(dir, 'real'), path.join(dir, 'sub', 'link'));
        await symlink(dir, path.join(dir, 'loop'));
        assert.deepEqual((await s.list('')).map((o) => o.key), ['real']);
      }));
  });
});
