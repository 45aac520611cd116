import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, it } from 'node:test';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { promisify } from 'node:util';

import { PitrError } from '../../src/errors.js';
import { openStorage, parseReplicaUrl } from '../../src/storage/open-storage.js';
import { backendFor, invalidReplicaUrl, registerBackend, registeredSchemes, type ParsedReplicaUrl } from '../../src/storage/registry.js';
import type { StorageClient } from '../../src/storage/storage-client.js';

const run = promisify(execFile);
const openStorageModule = pathToFileURL(path.join(path.dirname(fileURLToPath(import.meta.url)), '../../src/storage/open-storage.js')).href;

describe('storage registry', () => {
  it('has the built-in backends, file and s3', () => {
    assert.deepEqual(registeredSchemes().slice(0, 2), ['file', 's3']);
    assert.equal(backendFor('S3')?.scheme, 's3');
  });

  it('routes a registered scheme to its backend for parsing and opening', async () => {
    interface MemUrl extends ParsedReplicaUrl {
      scheme: 'mem';
      name: string;
    }
    const opened: string[] = [];
    registerBackend<MemUrl>({
      scheme: 'mem',
      example: 'a memory store (mem://name)',
      parse(input) {
        const m = /^mem:\/\/([a-z]+)$/.exec(input);
        if (!m) throw invalidReplicaUrl(input, 'mem URLs look like mem://name');
        return { scheme: 'mem', name: m[1]!, url: `mem://${m[1]!}` };
      },
      async open(parsed) {
        opened.push(parsed.name);
        return { url: parsed.url } as StorageClient;
      },
    });
    assert.deepEqual(parseReplicaUrl('mem://abc') as unknown, { scheme: 'mem', name: 'abc', url: 'mem://abc' });
    const client = await openStorage('mem://abc');
    assert.equal(client.url, 'mem://abc');
    assert.deepEqual(opened, ['abc']);
    assert.throws(() => parseReplicaUrl('mem://ABC'), (err: unknown) => err instanceof PitrError && err.code === 'REPLICA_URL_INVALID');
    // Every backend's form is in the hint of an unknown scheme.
    assert.throws(() => parseReplicaUrl('gs://bucket'), (err: unknown) =>
      err instanceof PitrError && /mem:\/\/name/.test(err.hint ?? '') && /s3:\/\//.test(err.hint ?? '') && /file:\/\/\//.test(err.hint ?? ''));
  });

  it('opens file replicas without loading the AWS SDK; loads it for s3 replicas only', async () => {
    const dir = await mkdtemp(path.join(tmpdir(), 'pitr-registry-'));
    try {
      // A child in which any import of the AWS SDK fails: file replicas must work there.
      const hooks = `export async function resolve(s, c, next) { if (s.startsWith('@aws-sdk/')) throw new Error('AWS SDK loaded: ' + s); return next(s, c); }`;
      const script = `
        import { register } from 'node:module';
        register('data:text/javascript,' + encodeURIComponent(${JSON.stringify(hooks)}));
        const { openStorage } = await import(${JSON.stringify(openStorageModule)});
        const file = await openStorage(${JSON.stringify(dir)});
        await file.put('a/b', new Uint8Array([1, 2, 3]));
        const got = await file.get('a/b');
        let s3 = 'opened';
        try { await openStorage('s3://bucket/p?endpoint=http://127.0.0.1:9'); } catch (err) { s3 = String(err.message); }
        console.log(JSON.stringify({ got: [...got], s3 }));
      `;
      const { stdout } = await run(process.execPath, ['--input-type=module', '-e', script], { timeout: 60_000 });
      const out = JSON.parse(stdout.trim().split('\n').pop()!) as { got: number[]; s3: string };
      assert.deepEqual(out.got, [1, 2, 3]);
      assert.match(out.s3, /AWS SDK loaded/);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
