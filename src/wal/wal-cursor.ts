import type { WalHeader } from './wal-format.js';

/** Where capture stands in one WAL incarnation: after `frame` committed frames (0 = just after the header). */
export interface WalCursor {
  salt1: number;
  salt2: number;
  pageSize: number;
  bigEndian: boolean;
  frame: number;
  /** Running checksum after `frame` (the header's checksum when frame is 0): the chain's seed for frame+1. */
  checksum1: number;
  checksum2: number;
}

/** The cursor before any frame of the WAL incarnation that `h` starts. */
export function cursorAtHeader(h: WalHeader): WalCursor {
  return {
    salt1: h.salt1,
    salt2: h.salt2,
    pageSize: h.pageSize,
    bigEndian: h.bigEndian,
    frame: 0,
    checksum1: h.checksum1,
    checksum2: h.checksum2,
  };
}

/** True when `h` starts the same WAL incarnation as `c` (same salts, page size and byte order). */
export function sameWalIncarnation(h: WalHeader, c: WalCursor): boolean {
  return h.salt1 === c.salt1 && h.salt2 === c.salt2 && h.pageSize === c.pageSize && h.bigEndian === c.bigEndian;
}
