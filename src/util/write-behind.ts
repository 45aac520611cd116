import type { FileHandle } from 'node:fs/promises';
import { Semaphore } from './bounded.js';
import { writeAllAt } from './write-at.js';

/** Copies in flight at once: enough to keep libuv's pool writing while the caller produces more. */
const DEFAULT_SLOTS = 4;

/**
 * Positional writes that run behind the caller: `write` copies the bytes into one of a few reused
 * buffers, starts the write and returns, so the caller can produce the next bytes (decompress the
 * next chunk of a snapshot, say) while the kernel copies these into the page cache. It waits only
 * when every buffer is still being written. The copy costs far less than it saves: the caller may
 * reuse its own buffer at once, and no fresh memory is touched per write.
 *
 * A failed write is reported by a later `write` or by `drain`; call `drain` before closing the file
 * on every path, so that no write runs against a closed or deleted file.
 */
export class WriteBehind {
  private readonly free: Buffer[] = [];
  private readonly slots: Semaphore;
  private readonly running = new Set<Promise<void>>();
  private failed: { err: unknown } | undefined;

  constructor(
    private readonly fh: FileHandle,
    slots = DEFAULT_SLOTS,
  ) {
    this.slots = new Semaphore(slots);
  }

  /** Queue a copy of `bytes` to be written at `pos`; resolves once the copy is taken. */
  async write(bytes: Uint8Array, pos: number): Promise<void> {
    const release = await this.slots.acquire();
    try {
      this.throwIfFailed();
    } catch (err) {
      release();
      throw err;
    }
    let buf = this.free.pop();
    if (buf === undefined || buf.length < bytes.length) buf = Buffer.allocUnsafe(bytes.length);
    buf.set(bytes);
    const slot = buf;
    const p: Promise<void> = writeAllAt(this.fh, [slot.subarray(0, bytes.length)], pos).then(
      // The buffer is free again before its slot is: the next write reuses it.
      () => void this.free.push(slot),
      (err: unknown) => {
        this.failed ??= { err };
      },
    ).finally(() => {
      this.running.delete(p);
      release();
    });
    this.running.add(p);
  }

  /** Wait for every write; rethrows the first failure. */
  async drain(): Promise<void> {
    while (this.running.size > 0) await Promise.all(this.running);
    this.throwIfFailed();
  }

  private throwIfFailed(): void {
    if (this.failed) throw this.failed.err;
  }
}
