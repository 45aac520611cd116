import { type Fail, failCorrupt } from './framing.js';
import { COMMIT_RECORD_LENGTH, RECORD_TAG_LENGTH, getU53 } from './segment-body.js';
import type { SegmentHeader, TxRecord } from './segment-types.js';

/** What a body's commit records say about it. */
export interface BodySummary {
  txCount: number;
  firstTxid: number;
  lastTxid: number;
  firstTime: number;
  lastTime: number;
}

/**
 * Walk a body's records without copying pages: checks that it is whole records, ends with a commit,
 * and has contiguous txids with non-decreasing commit times.
 */
export function summarizeBody(body: Uint8Array, pageSize: number, fail: Fail): BodySummary {
  const view = new DataView(body.buffer, body.byteOffset, body.byteLength);
  const end = body.length;
  const pageRecord = RECORD_TAG_LENGTH + pageSize;
  let at = 0;
  let txCount = 0;
  let firstTxid = 0;
  let lastTxid = 0;
  let firstTime = 0;
  let lastTime = 0;
  let pagesSinceCommit = 0;
  while (at < end) {
    if (end - at < RECORD_TAG_LENGTH) fail(`body ends inside a record tag at byte ${at}`);
    const tag = view.getUint32(at, false);
    if (tag !== 0) {
      if (end - at < pageRecord) fail(`body ends inside page ${tag} at byte ${at}`);
      at += pageRecord;
      pagesSinceCommit++;
      continue;
    }
    const c = readCommit(view, at, end, fail);
    if (txCount === 0) {
      firstTxid = c.txid;
      firstTime = c.commitTime;
    } else {
      if (c.txid !== lastTxid + 1) fail(`txid ${c.txid} at byte ${at} does not follow txid ${lastTxid}`);
      if (c.commitTime < lastTime) fail(`commit time of txid ${c.txid} goes backwards (${c.commitTime} < ${lastTime})`);
    }
    lastTxid = c.txid;
    lastTime = c.commitTime;
    txCount++;
    pagesSinceCommit = 0;
    at += COMMIT_RECORD_LENGTH;
  }
  if (pagesSinceCommit > 0) fail(`body ends with ${pagesSinceCommit} page record(s) not followed by a commit`);
  if (txCount === 0) fail('body holds no transaction');
  return { txCount, firstTxid, lastTxid, firstTime, lastTime };
}

function readCommit(view: DataView, at: number, end: number, fail: Fail): { dbSizePages: number; txid: number; commitTime: number } {
  if (end - at < COMMIT_RECORD_LENGTH) fail(`body ends inside a commit record at byte ${at}`);
  const dbSizePages = view.getUint32(at + 4, false);
  const txid = getU53(view, at + 8);
  const commitTime = getU53(view, at + 16);
  if (dbSizePages === 0) fail(`commit record at byte ${at} has database size 0`);
  if (txid === undefined || txid === 0) fail(`commit record at byte ${at} has txid outside 1..2^53-1`);
  if (commitTime === undefined) fail(`commit record at byte ${at} has a commit time beyond 2^53-1`);
  return { dbSizePages, txid: txid!, commitTime: commitTime! };
}

export function checkSummaryMatches(h: SegmentHeader, s: BodySummary, fail: Fail): void {
  if (s.firstTxid !== h.firstTxid || s.lastTxid !== h.lastTxid) {
    fail(`header says txids ${h.firstTxid}..${h.lastTxid} but the body holds ${s.firstTxid}..${s.lastTxid}`);
  }
  if (s.firstTime !== h.firstTime || s.lastTime !== h.lastTime) {
    fail(`header says commit times ${h.firstTime}..${h.lastTime} but the body holds ${s.firstTime}..${s.lastTime}`);
  }
}

/**
 * Iterate a verified body's transactions in order. Pages' data are views into `body` (no copy).
 * Still checks structure and txid contiguity, throwing OBJECT_CORRUPT, because it also runs over
 * concatenated bodies whose seams no single checksum covered.
 */
export function* iterateTransactions(body: Uint8Array, pageSize: number, name?: string): Generator<TxRecord> {
  const fail = failCorrupt('segment', name);
  const view = new DataView(body.buffer, body.byteOffset, body.byteLength);
  const end = body.length;
  const pageRecord = RECORD_TAG_LENGTH + pageSize;
  let at = 0;
  let pages: { pgno: number; data: Uint8Array }[] = [];
  let prev: { txid: number; commitTime: number } | undefined;
  while (at < end) {
    if (end - at < RECORD_TAG_LENGTH) fail(`body ends inside a record tag at byte ${at}`);
    const tag = view.getUint32(at, false);
    if (tag !== 0) {
      if (end - at < pageRecord) fail(`body ends inside page ${tag} at byte ${at}`);
      pages.push({ pgno: tag, data: body.subarray(at + RECORD_TAG_LENGTH, at + pageRecord) });
      at += pageRecord;
      continue;
    }
    const c = readCommit(view, at, end, fail);
    if (prev !== undefined) {
      if (c.txid !== prev.txid + 1) fail(`txid ${c.txid} at byte ${at} does not follow txid ${prev.txid}`);
      if (c.commitTime < prev.commitTime) fail(`commit time of txid ${c.txid} goes backwards`);
    }
    at += COMMIT_RECORD_LENGTH;
    prev = c;
    const tx: TxRecord = { txid: c.txid, commitTime: c.commitTime, dbSizePages: c.dbSizePages, pages };
    pages = [];
    yield tx;
  }
  if (pages.length > 0) fail(`body ends with ${pages.length} page record(s) not followed by a commit`);
}
