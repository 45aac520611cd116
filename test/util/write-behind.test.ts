import { after, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { WriteBehind } from '../../src/util/write-behind.js';

const dir = mkdtempSync(join(tmpdir(), 'pitr-write-behind-'));
after(() => rmSync(dir, { recursive: true, force: true }));

describe('WriteBehind', () => {
  it('writes a copy: the caller reuses its buffer at once, every chunk lands where it was sent', async () => {
    const path = join(dir, 'out.bin');
    const fh = await open(path, 'wx');
    const CHUNK = 64 * 1024;
    const COUNT = 40;
    const writer = new WriteBehind(fh, 3);
    const mine = Buffer.alloc(CHUNK);
    // Out of order on purpose, and the one buffer overwritten right after each call.
    const order = Array.from({ length: COUNT }, (_, i) => (i * 7) % COUNT);
    for (const i of order) {
      mine.fill(i + 1);
      await writer.write(mine, i * CHUNK);
      mine.fill(0xee);
    }
    await writer.drain();
    await fh.close();
    const got = readFileSync(path);
    assert.equal(got.length, COUNT * CHUNK);
    for (let i = 0; i < COUNT; i++) {
      const part = got.subarray(i * CHUNK, (i + 1) * CHUNK);
      assert.ok(part.every((b) => b === i + 1), `chunk ${i}`);
    }
  });

  it('a failed write surfaces from drain (and from the next write), never silently', async () => {
    const path = join(dir, 'ro.bin');
    writeFileSync(path, 'x');
    const fh = await open(path, 'r'); // writes fail with EBADF
    const writer = new WriteBehind(fh, 2);
    await writer.write(Buffer.alloc(4096, 1), 0);
    await assert.rejects(writer.drain(), (err: NodeJS.ErrnoException) => err.code === 'EBADF');
    await assert.rejects(writer.write(Buffer.alloc(4096, 2), 4096), (err: NodeJS.ErrnoException) => err.code === 'EBADF');
    await fh.close();
    assert.equal(readFileSync(path, 'utf8'), 'x');
  });
});
