import { xxhashApi } from '../../segment/framing.js';

/** Hashes one page image (XXH64, seed 0). Obtain with pageHasher(); synchronous once loaded. */
export type PageHasher = (page: Uint8Array) => bigint;

let hasher: PageHasher | undefined;

/** The page hash function (loads the wasm module the first time). */
export async function pageHasher(): Promise<PageHasher> {
  if (!hasher) {
    const api = await xxhashApi();
    hasher = (page) => api.h64Raw(page);
  }
  return hasher;
}

const zeroHashes = new Map<number, bigint>();

/** The hash of an all-zero page: what a restore leaves in pages a database grew by without writing. */
export function zeroPageHash(hash: PageHasher, pageSize: number): bigint {
  let h = zeroHashes.get(pageSize);
  if (h === undefined) {
    h = hash(new Uint8Array(pageSize));
    zeroHashes.set(pageSize, h);
  }
  return h;
}

/**
 * One 64-bit hash per page of a database as a restore would rebuild it: page k at index k - 1,
 * `count` pages. Maintained the way restore applies transactions (docs/FORMAT.md): a page write
 * past the end grows the image with zero pages, and each commit sets the size, truncating or
 * growing with zero pages. 8 bytes per page: 2 MiB per GiB of database at 4 KiB pages.
 */
export class PageHashes {
  private hashes: BigUint64Array;
  private n: number;

  constructor(
    readonly pageSize: number,
    private readonly zero: bigint,
    initial?: { hashes: BigUint64Array; count: number },
  ) {
    this.hashes = initial?.hashes ?? new BigUint64Array(16);
    this.n = initial?.count ?? 0;
  }

  /** Pages in the image. */
  get count(): number {
    return this.n;
  }

  /** The hash of page `pgno` (1-based); undefined past the end. */
  get(pgno: number): bigint | undefined {
    return pgno >= 1 && pgno <= this.n ? this.hashes[pgno - 1] : undefined;
  }

  /** A page the transaction in progress wrote. */
  set(pgno: number, hash: bigint): void {
    if (pgno > this.n) this.resize(pgno);
    this.hashes[pgno - 1] = hash;
  }

  /** The transaction committed with the database at `dbSizePages` pages. */
  commit(dbSizePages: number): void {
    this.resize(dbSizePages);
  }

  /** The hashes of pages 1..count, as one view (valid until the next change). */
  view(): BigUint64Array {
    return this.hashes.subarray(0, this.n);
  }

  private resize(pages: number): void {
    if (pages > this.hashes.length) {
      const grown = new BigUint64Array(Math.max(pages, Math.ceil(this.hashes.length * 1.5)));
      grown.set(this.hashes.subarray(0, this.n));
      this.hashes = grown;
    }
    // Pages between the old end and the new one were never written: a restore leaves zeros there.
    if (pages > this.n) this.hashes.fill(this.zero, this.n, pages);
    this.n = pages;
  }
}
