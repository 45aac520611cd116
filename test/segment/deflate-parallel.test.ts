import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { inflateRawSync } from 'node:zlib';
import { randomBytes } from 'node:crypto';
import { DEFLATE_SLICE_BYTES, deflateParallel, deflateSlices, isJoinable, joinDeflated } from '../../src/segment/deflate-parallel.js';

/** Half compressible text, half random bytes, so slices differ and matches exist within them. */
function body(bytes: number): Uint8Array {
  const out = Buffer.alloc(bytes);
  const text = Buffer.from('id=42;email=user@example.com;status=paid;city=oslo;');
  for (let at = 0; at < bytes; at += 8192) {
    out.fill(text, at, Math.min(bytes, at + 4096));
    if (at + 4096 < bytes) randomBytes(Math.min(4096, bytes - at - 4096)).copy(out, at + 4096);
  }
  return out;
}

describe('deflateParallel', () => {
  for (const size of [0, 1, 4096, DEFLATE_SLICE_BYTES, DEFLATE_SLICE_BYTES * 1.5 + 1, DEFLATE_SLICE_BYTES * 4, DEFLATE_SLICE_BYTES * 5 + 100, DEFLATE_SLICE_BYTES * 5 + DEFLATE_SLICE_BYTES / 2 + 7]) {
    it(`gives one raw deflate stream that any inflater reads back (${size} bytes)`, async () => {
      const input = body(Math.floor(size));
      const stored = Buffer.concat(await deflateParallel(input, 1));
      // info: the engine must consume every stored byte, i.e. the slices form ONE stream that
      // ends with the last slice's final block, not several streams back to back.
      const r = inflateRawSync(stored, { info: true }) as unknown as { buffer: Buffer; engine: { bytesWritten: number } };
      assert.ok(Buffer.from(input).equals(r.buffer), 'round trip');
      assert.equal(r.engine.bytesWritten, stored.length, 'stray bytes after the final block');
    });
  }

  it('compresses about as well as one compressor over the whole body', async () => {
    const input = body(DEFLATE_SLICE_BYTES * 8);
    const { deflateRawSync } = await import('node:zlib');
    const whole = deflateRawSync(input, { level: 1 }).length;
    const sliced = Buffer.concat(await deflateParallel(input, 1)).length;
    assert.ok(sliced <= whole * 1.01, `sliced ${sliced} vs whole ${whole}`);
  });

  for (const chunks of [0, 1, 2, 5, 9]) {
    it(`streams ${chunks} chunk(s) as one raw deflate stream, in order`, async () => {
      const parts = Array.from({ length: chunks }, (_, i) => body(DEFLATE_SLICE_BYTES - (i % 2) * 4096 + i));
      async function* source(): AsyncGenerator<Uint8Array> {
        for (const p of parts) yield p;
      }
      const out: Uint8Array[] = [];
      for await (const c of deflateSlices(source(), 1)) out.push(c);
      const stored = Buffer.concat(out);
      const r = inflateRawSync(stored, { info: true }) as unknown as { buffer: Buffer; engine: { bytesWritten: number } };
      assert.ok(Buffer.concat(parts).equals(r.buffer), 'round trip in order');
      assert.equal(r.engine.bytesWritten, stored.length, 'stray bytes after the final block');
    });
  }
});

describe('joinable streams', () => {
  it('join into one stream of the concatenated input, without inflating', async () => {
    const inputs = [0, 1, 4096, DEFLATE_SLICE_BYTES * 3 + 5].map((n) => body(n));
    const parts: Uint8Array[] = [];
    for (const input of inputs) {
      const stored = Buffer.concat(await deflateParallel(input, 1, { joinable: true }));
      assert.ok(isJoinable(stored), `${input.length} bytes: joinable ending`);
      const r = inflateRawSync(stored, { info: true }) as unknown as { buffer: Buffer; engine: { bytesWritten: number } };
      assert.ok(Buffer.from(input).equals(r.buffer), `${input.length} bytes: round trip on its own`);
      assert.equal(r.engine.bytesWritten, stored.length, 'stray bytes after the final block');
      parts.push(stored);
    }
    const joined = Buffer.concat(joinDeflated(parts));
    assert.ok(isJoinable(joined));
    const r = inflateRawSync(joined, { info: true }) as unknown as { buffer: Buffer; engine: { bytesWritten: number } };
    assert.ok(Buffer.concat(inputs).equals(r.buffer), 'joined round trip');
    assert.equal(r.engine.bytesWritten, joined.length, 'stray bytes after the final block');
  });

  it('a finished stream is not joinable and is refused', async () => {
    const finished = Buffer.concat(await deflateParallel(body(10_000), 1));
    assert.equal(isJoinable(finished), false);
    assert.throws(() => joinDeflated([finished]), RangeError);
  });
});
