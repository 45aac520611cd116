import { MAX_PAGE_SIZE, MIN_PAGE_SIZE } from './framing.js';
import { COMMIT_RECORD_LENGTH, MAX_U32, RECORD_TAG_LENGTH, isSafeNonNegInt, setU53 } from './segment-body.js';

const MIN_CAPACITY = 64 * 1024;

/**
 * Accumulates a segment body as capture reads WAL frames: page() per frame, commit() per commit
 * frame, rollback() when frames after the last commit turn out not to be a transaction.
 *
 * One buffer that doubles when full, so appending N bytes costs O(N) copies overall. Bytes of
 * committed transactions are never written again (rollback only cuts what follows them, and growth
 * copies into a new buffer), which is what lets finish() hand out a view instead of a copy.
 */
export class SegmentBodyBuilder {
  readonly pageSize: number;
  #buf: Uint8Array;
  #view: DataView;
  #len = 0;
  #committed = 0;
  #txCount = 0;
  #firstTxid: number | undefined;
  #lastTxid: number | undefined;
  #firstTime: number | undefined;
  #lastTime: number | undefined;

  /**
   * `expectedBytes`: the body size the caller expects to build, when it knows (capture does: it has
   * the frame list before it reads a page). The buffer then starts at that size instead of growing
   * by doubling, which copied each byte about twice on large passes (11% of the agent's JS time
   * under a flat-out writer).
   */
  constructor(pageSize: number, expectedBytes = 0, reuse?: Uint8Array) {
    if (!Number.isInteger(pageSize) || pageSize < MIN_PAGE_SIZE || pageSize > MAX_PAGE_SIZE || (pageSize & (pageSize - 1)) !== 0) {
      throw new RangeError(`page size must be a power of two in ${MIN_PAGE_SIZE}..${MAX_PAGE_SIZE}, got ${pageSize}`);
    }
    this.pageSize = pageSize;
    const want = Math.max(MIN_CAPACITY, 4 * (pageSize + RECORD_TAG_LENGTH), expectedBytes);
    this.#buf = reuse !== undefined && reuse.length >= want ? reuse : new Uint8Array(want);
    this.#view = new DataView(this.#buf.buffer, this.#buf.byteOffset, this.#buf.byteLength);
  }

  /**
   * The builder's buffer, for a later builder to start from (the `reuse` argument). Passing it on
   * ends the life of every view finish() returned: do so only once they are no longer read. A
   * fresh buffer of tens of MiB costs a page fault per page on first write, and under a flat-out
   * writer those faults were ~11% of the agent's CPU on a VM where faults are expensive.
   */
  get buffer(): Uint8Array {
    return this.#buf;
  }

  /** Body bytes of `transactions` transactions writing `pages` page images in all. */
  static bodyBytes(pageSize: number, pages: number, transactions: number): number {
    return pages * (RECORD_TAG_LENGTH + pageSize) + transactions * COMMIT_RECORD_LENGTH;
  }

  /** Append one page written by the transaction in progress. `data` is copied. */
  page(pgno: number, data: Uint8Array): void {
    if (!Number.isInteger(pgno) || pgno < 1 || pgno > MAX_U32) {
      throw new RangeError(`page number must be an integer in 1..${MAX_U32}, got ${pgno}`);
    }
    if (data.length !== this.pageSize) {
      throw new RangeError(`page ${pgno} is ${data.length} bytes, expected the page size ${this.pageSize}`);
    }
    this.#reserve(RECORD_TAG_LENGTH + this.pageSize);
    this.#view.setUint32(this.#len, pgno, false);
    this.#buf.set(data, this.#len + RECORD_TAG_LENGTH);
    this.#len += RECORD_TAG_LENGTH + this.pageSize;
  }

  /**
   * Close the transaction in progress. txids must be contiguous and commit times non-decreasing
   * within a body, because restore binary-searches both; a caller whose clock stepped back should
   * pass Math.max(builder.lastTime, now).
   */
  commit(dbSizePages: number, txid: number, commitTime: number): void {
    if (!Number.isInteger(dbSizePages) || dbSizePages < 1 || dbSizePages > MAX_U32) {
      throw new RangeError(`database size must be an integer in 1..${MAX_U32} pages, got ${dbSizePages}`);
    }
    if (!isSafeNonNegInt(txid) || txid < 1) throw new RangeError(`txid must be a positive safe integer, got ${txid}`);
    if (!isSafeNonNegInt(commitTime)) {
      throw new RangeError(`commit time must be a non-negative safe integer (ms), got ${commitTime}`);
    }
    if (this.#lastTxid !== undefined && txid !== this.#lastTxid + 1) {
      throw new RangeError(`txid ${txid} does not follow ${this.#lastTxid}; a segment holds a contiguous txid range`);
    }
    if (this.#lastTime !== undefined && commitTime < this.#lastTime) {
      throw new RangeError(`commit time ${commitTime} of txid ${txid} is before ${this.#lastTime} of the previous transaction`);
    }
    this.#reserve(COMMIT_RECORD_LENGTH);
    const v = this.#view;
    const at = this.#len;
    v.setUint32(at, 0, false);
    v.setUint32(at + 4, dbSizePages, false);
    setU53(v, at + 8, txid);
    setU53(v, at + 16, commitTime);
    this.#len += COMMIT_RECORD_LENGTH;
    this.#committed = this.#len;
    this.#txCount++;
    this.#firstTxid ??= txid;
    this.#firstTime ??= commitTime;
    this.#lastTxid = txid;
    this.#lastTime = commitTime;
  }

  /** Drop page records after the last commit. */
  rollback(): void {
    this.#len = this.#committed;
  }

  /** Bytes of whole transactions: the length finish() would return. */
  get byteLength(): number {
    return this.#committed;
  }

  /** Bytes of page records not yet followed by a commit. */
  get pendingByteLength(): number {
    return this.#len - this.#committed;
  }

  get txCount(): number {
    return this.#txCount;
  }

  get firstTxid(): number | undefined {
    return this.#firstTxid;
  }

  get lastTxid(): number | undefined {
    return this.#lastTxid;
  }

  get firstTime(): number | undefined {
    return this.#firstTime;
  }

  get lastTime(): number | undefined {
    return this.#lastTime;
  }

  /**
   * The body bytes of whole transactions. A view, not a copy: it stays valid and unchanged whatever
   * the builder does afterwards. Pending pages stay in the builder.
   */
  finish(): Uint8Array {
    return this.#buf.subarray(0, this.#committed);
  }

  /** Start an empty body. Views returned by finish() keep their bytes (a fresh buffer is used). */
  reset(): void {
    this.#buf = new Uint8Array(Math.max(MIN_CAPACITY, 4 * (this.pageSize + RECORD_TAG_LENGTH)));
    this.#view = new DataView(this.#buf.buffer);
    this.#len = 0;
    this.#committed = 0;
    this.#txCount = 0;
    this.#firstTxid = this.#lastTxid = this.#firstTime = this.#lastTime = undefined;
  }

  #reserve(n: number): void {
    const need = this.#len + n;
    if (need <= this.#buf.length) return;
    let cap = this.#buf.length * 2;
    while (cap < need) cap *= 2;
    const next = new Uint8Array(cap);
    next.set(this.#buf.subarray(0, this.#len));
    this.#buf = next;
    this.#view = new DataView(next.buffer);
  }
}
