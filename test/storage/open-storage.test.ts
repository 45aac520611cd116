import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { describe, it } from 'node:test';

import { isPitrError } from '../../src/errors.js';
import { FileStorage } from '../../src/storage/file/file-storage.js';
import { openStorage, parseReplicaUrl } from '../../src/storage/open-storage.js';

/** The directory a file replica resolves to; fails for any other scheme. */
function filePath(input: string, cwd?: string): string {
  const parsed = parseReplicaUrl(input, cwd);
  assert.equal(parsed.scheme, 'file');
  return parsed.scheme === 'file' ? parsed.path : '';
}

function assertInvalid(input: string, why?: RegExp): void {
  assert.throws(
    () => parseReplicaUrl(input, '/work/app'),
    (err: unknown) => {
      assert.ok(isPitrError(err, 'REPLICA_URL_INVALID'), `expected REPLICA_URL_INVALID, got ${String(err)}`);
      assert.ok(err.message.includes(`"${input}"`), `message quotes the input: ${err.message}`);
      assert.ok(err.hint, 'has a hint');
      if (why) assert.match(err.message, why);
      return true;
    },
  );
}

describe('parseReplicaUrl', () => {
  describe('file replicas', () => {
    it('resolves a bare relative path against cwd', () => {
      assert.deepEqual(parseReplicaUrl('backups/app', '/work/app'), {
        scheme: 'file', path: '/work/app/backups/app', url: 'file:///work/app/backups/app',
      });
      assert.equal(filePath('./b', '/work/app'), '/work/app/b');
      assert.equal(filePath('../b/', '/work/app'), '/work/b');
      assert.equal(filePath('.', '/work/app'), '/work/app');
    });

    it('defaults cwd to the process cwd', () => {
      assert.equal(filePath('x'), path.resolve('x'));
    });

    it('takes an absolute path as is, normalized', () => {
      assert.deepEqual(parseReplicaUrl('/var/backups//app/', '/work/app'), {
        scheme: 'file', path: '/var/backups/app', url: 'file:///var/backups/app',
      });
    });

    it('accepts file:/// URLs, decoding escapes, and normalizes the display form', () => {
      assert.deepEqual(parseReplicaUrl('file:///var/backups/app', '/work/app'), {
        scheme: 'file', path: '/var/backups/app', url: 'file:///var/backups/app',
      });
      const spaced = parseReplicaUrl('file:///var/my%20backups/x/../app/', '/work/app');
      assert.equal(filePath(spaced.url), '/var/my backups/app');
      assert.equal(spaced.url, 'file:///var/my%20backups/app');
      assert.equal(filePath('FILE:///a'), '/a');
      assert.equal(filePath('file://localhost/a'), '/a');
    });

    it('gives a display URL that parses back to the same path', () => {
      const first = parseReplicaUrl('my backups/#1 %', '/work/app');
      const again = parseReplicaUrl(first.url);
      assert.equal(again.scheme, 'file');
      assert.equal(again.scheme === 'file' && again.path, '/work/app/my backups/#1 %');
      assert.equal(again.url, first.url);
    });

    it('lets a directory with a colon in its name be given as ./name', () => {
      assert.equal(filePath('./host:db', '/work/app'), '/work/app/host:db');
    });

    it('rejects relative and malformed file URLs', () => {
      assertInvalid('file://relative/dir', /absolute/);
      assertInvalid('file:relative', /file:\/\//);
      assertInvalid('file:/abs', /file:\/\//);
      assertInvalid('file:///a?b=c', /"\?"/);
      assertInvalid('file:///a#frag');
    });

    it('refuses "~", which only a shell expands', () => {
      assertInvalid('~/backups', /~/);
      assertInvalid('~');
    });
  });

  describe('s3 replicas', () => {
    it('parses bucket, prefix and params', () => {
      assert.deepEqual(
        parseReplicaUrl('s3://my-bucket/db/app?region=eu-west-1&endpoint=http://127.0.0.1:9000&force-path-style=true'),
        {
          scheme: 's3',
          bucket: 'my-bucket',
          prefix: 'db/app',
          params: { region: 'eu-west-1', endpoint: 'http://127.0.0.1:9000', 'force-path-style': 'true' },
          url: 's3://my-bucket/db/app?endpoint=http://127.0.0.1:9000&force-path-style=true&region=eu-west-1',
        },
      );
    });

    it('accepts a bucket root, trailing slashes and escapes', () => {
      const root = parseReplicaUrl('s3://bucket');
      assert.equal(root.scheme === 's3' && root.prefix, '');
      assert.equal(root.url, 's3://bucket');
      const slash = parseReplicaUrl('s3://bucket/');
      assert.equal(slash.scheme === 's3' && slash.prefix, '');
      const trailing = parseReplicaUrl('s3://bucket/a/b/');
      assert.equal(trailing.scheme === 's3' && trailing.prefix, 'a/b');
      assert.equal(trailing.url, 's3://bucket/a/b');
      const spaced = parseReplicaUrl('s3://bucket/my%20db');
      assert.equal(spaced.scheme === 's3' && spaced.prefix, 'my db');
      assert.equal(spaced.url, 's3://bucket/my%20db');
      assert.deepEqual(parseReplicaUrl(spaced.url), spaced);
    });

    it('does not depend on cwd', () => {
      assert.deepEqual(parseReplicaUrl('s3://bkt/p', '/x'), parseReplicaUrl('s3://bkt/p', '/y'));
    });

    it('rejects malformed S3 URLs', () => {
      assertInvalid('s3://', /bucket/);
      assertInvalid('s3:///prefix', /bucket/);
      assertInvalid('s3:bucket');
      assertInvalid('s3://bu cket/x');
      assertInvalid('s3://bucket:9000/x', /port/);
      assertInvalid('s3://key:secret@bucket/x', /credentials/);
      assertInvalid('s3://bucket/a/../b', /\.\./);
      assertInvalid('s3://bucket/a//b', /empty/);
      assertInvalid('s3://bucket/x#frag');
      assertInvalid('s3://bucket/x?regoin=us-east-1', /unknown parameter "regoin"/);
      assertInvalid('s3://bucket/x?region=a&region=b', /twice/);
      assertInvalid('s3://bucket/x?force-path-style=yes', /force-path-style/);
      assertInvalid('s3://bucket/x?endpoint=localhost:9000', /endpoint/);
      assertInvalid('s3://bucket/x?endpoint=http://k:s@host', /credentials/);
    });
  });

  describe('everything else', () => {
    it('rejects unknown schemes and garbage, quoting the input', () => {
      assertInvalid('http://example.com/backups', /"http:"/);
      assertInvalid('https://example.com/backups');
      assertInvalid('gs://bucket/prefix', /"gs:"/);
      assertInvalid('sftp:host/path');
      assertInvalid('://nothing');
      assertInvalid('');
      assertInvalid('   ');
    });

    it('lists the accepted forms in the hint', () => {
      try {
        parseReplicaUrl('gs://bucket');
        assert.fail('should throw');
      } catch (err) {
        assert.ok(isPitrError(err));
        assert.match(err.hint ?? '', /file:\/\/\//);
        assert.match(err.hint ?? '', /s3:\/\//);
      }
    });
  });
});

describe('openStorage', () => {
  it('opens a file replica from a bare path, relative to the given cwd', async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), 'pitr-open-storage-'));
    try {
      const client = await openStorage('replica', { cwd: dir });
      assert.ok(client instanceof FileStorage);
      assert.equal(client.url, `file://${dir}/replica`);
      assert.equal(await client.exists(), false);
      await client.put('k', new Uint8Array([42]));
      assert.equal(await client.exists(), true);
      const again = await openStorage(client.url);
      assert.deepEqual([...(await again.get('k'))], [42]);
      await client.close();
      await again.close();
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('opens S3 replicas without any request, with the normalized URL', async () => {
    const client = await openStorage('s3://bucket/prefix?region=us-east-1');
    try {
      assert.equal(client.url, 's3://bucket/prefix?region=us-east-1');
    } finally {
      await client.close();
    }
  });

  it('rejects invalid URLs with REPLICA_URL_INVALID', async () => {
    await assert.rejects(openStorage('http://x/y'), (err: unknown) => isPitrError(err, 'REPLICA_URL_INVALID'));
  });
});
