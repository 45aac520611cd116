import { createInflateRaw } from 'node:zlib';

/** Largest single output buffer for inflate; bigger bodies come back in a few chunks. */
const MAX_INFLATE_CHUNK = 64 * 1024 * 1024;

/**
 * Inflate one raw deflate stream off the event loop (on libuv's pool, so several calls use several
 * cores), producing at most `expected` bytes: a length field that lies cannot balloon memory.
 * The output buffer is sized to `expected`, so a valid stream comes back as one chunk that is used
 * as is: no per-256-KiB round trips and no final concatenation copy. `consumed` is how many input
 * bytes the stream used; the caller refuses anything after it.
 */
export function inflateExact(stored: Uint8Array, expected: number): Promise<{ body: Uint8Array; consumed: number }> {
  return new Promise((resolve, reject) => {
    // One spare byte: a body longer than the header says shows up as a second chunk.
    const inflater = createInflateRaw({ chunkSize: Math.max(64, Math.min(expected + 1, MAX_INFLATE_CHUNK)) });
    const chunks: Buffer[] = [];
    let total = 0;
    inflater.on('data', (chunk: Buffer) => {
      total += chunk.length;
      if (total > expected) {
        inflater.destroy(new Error(`inflates past the ${expected} bytes the header says`));
        return;
      }
      chunks.push(chunk);
    });
    inflater.on('error', reject);
    inflater.on('end', () => {
      const body = chunks.length === 1 ? (chunks[0] as Buffer) : Buffer.concat(chunks, total);
      resolve({ body, consumed: inflater.bytesWritten });
    });
    inflater.end(stored);
  });
}
