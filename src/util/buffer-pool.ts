/** Free bytes the pool keeps at most; a buffer given back beyond this is left to the GC. */
const DEFAULT_MAX_FREE_BYTES = 64 * 1024 * 1024;

/**
 * Buffers handed out and given back, for a producer that knows when its consumer is done with
 * each one (restore: a decoded segment body is free once the flush that wrote its pages has
 * settled). On this kind of VM a first touch of fresh memory is a page fault costing microseconds;
 * a restore from hundreds of segments took tens of thousands of them when every body was a fresh
 * buffer, and V8 frees dead buffers only in batches of tens of MB.
 *
 * `take(n)` returns a view of exactly n bytes (contents undefined); `give` takes back only what
 * `take` handed out, anything else is ignored, so a caller may give every body it is done with.
 */
export class BufferPool {
  private readonly free: ArrayBuffer[] = [];
  private freeBytes = 0;
  private readonly mine = new WeakSet<ArrayBuffer>();

  constructor(private readonly maxFreeBytes = DEFAULT_MAX_FREE_BYTES) {}

  take(n: number): Uint8Array {
    // The smallest free buffer that fits, unless it is more than twice too big: a large one
    // spent on a small body would force the next large body into a fresh allocation.
    let best = -1;
    for (let i = 0; i < this.free.length; i++) {
      const size = (this.free[i] as ArrayBuffer).byteLength;
      if (size >= n && size <= 2 * n && (best < 0 || size < (this.free[best] as ArrayBuffer).byteLength)) best = i;
    }
    if (best >= 0) {
      const ab = this.free[best] as ArrayBuffer;
      this.free[best] = this.free[this.free.length - 1] as ArrayBuffer;
      this.free.pop();
      this.freeBytes -= ab.byteLength;
      return new Uint8Array(ab, 0, n);
    }
    const fresh = Buffer.allocUnsafeSlow(n);
    this.mine.add(fresh.buffer);
    return new Uint8Array(fresh.buffer, fresh.byteOffset, n);
  }

  give(view: Uint8Array): void {
    const ab = view.buffer as ArrayBuffer;
    if (!this.mine.has(ab) || this.freeBytes + ab.byteLength > this.maxFreeBytes) return;
    if (this.free.includes(ab)) return;
    this.free.push(ab);
    this.freeBytes += ab.byteLength;
  }
}
