import type { FileHandle } from 'node:fs/promises';

/**
 * Write every byte of `bufs`, in order, at `pos`: one pwritev, then plain writes for whatever a
 * short write left (rare, e.g. near a quota). Node's write calls may write less than asked.
 */
export async function writeAllAt(fh: FileHandle, bufs: readonly Uint8Array[], pos: number): Promise<void> {
  let expected = 0;
  for (const b of bufs) expected += b.length;
  const { bytesWritten } = bufs.length === 1 ? await fh.write(bufs[0] as Uint8Array, 0, expected, pos) : await fh.writev(bufs as Uint8Array[], pos);
  if (bytesWritten === expected) return;
  const rest = Buffer.concat(bufs).subarray(bytesWritten);
  let done = 0;
  while (done < rest.length) done += (await fh.write(rest, done, rest.length - done, pos + bytesWritten + done)).bytesWritten;
}
