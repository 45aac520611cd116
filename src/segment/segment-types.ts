/** How an object's body is stored. 'deflate' is raw deflate (RFC 1951, no zlib/gzip wrapper). */
export type Compression = 'none' | 'deflate';

/** Decoded header of a segment object; see docs/FORMAT.md. */
export interface SegmentHeader {
  version: 1;
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
}

/** One committed transaction as stored in a segment body. */
export interface TxRecord {
  txid: number;
  commitTime: number;
  dbSizePages: number;
  /** In WAL order; a pgno may repeat, and the later copy wins. */
  pages: { pgno: number; data: Uint8Array }[];
}
