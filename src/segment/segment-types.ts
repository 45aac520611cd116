/**
 * How an object's body is stored. 'zstd' is Zstandard frames (RFC 8878), what pitr writes;
 * 'deflate' is raw deflate (RFC 1951, no zlib/gzip wrapper), what earlier versions wrote.
 */
export type Compression = 'none' | 'deflate' | 'zstd';

/** Decoded header of a segment object; see docs/FORMAT.md. */
export interface SegmentHeader {
  /** 2 is written; 1 (no 'zstd') is still read. */
  version: 1 | 2;
  kind: 'segment';
  generation: string;
  pageSize: number;
  firstTxid: number;
  lastTxid: number;
  firstTime: number;
  lastTime: number;
  compression: Compression;
  /** Length of the body before compression. */
  bodyLength: number;
  /**
   * Set only on a catch-up step (one transaction: what changed while the agent was down): the
   * commit time of the txid before it, where the downtime it covers starts (ms).
   */
  catchUpFrom?: number;
}

/** One committed transaction as stored in a segment body. */
export interface TxRecord {
  txid: number;
  commitTime: number;
  dbSizePages: number;
  /** In WAL order; a pgno may repeat, and the later copy wins. */
  pages: { pgno: number; data: Uint8Array }[];
}
