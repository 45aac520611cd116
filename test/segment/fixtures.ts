import assert from 'node:assert/strict';
import { PitrError } from '../../src/errors.js';
import { SegmentBodyBuilder } from '../../src/segment/segment-builder.js';
import { checksum64, encodePrefix, writeU64BE } from '../../src/segment/framing.js';

/** Shared helpers for the segment tests (this file holds no tests itself). */

export const GEN = '0123456789abcdef';
export const T0 = 1_763_800_000_000;

/** A deterministic page: a little structure (pgno, seed, text) then pseudo-random bytes. */
export function makePage(pageSize: number, pgno: number, seed = 0): Uint8Array {
  const page = new Uint8Array(pageSize);
  const view = new DataView(page.buffer);
  view.setUint32(0, pgno);
  view.setUint32(4, seed);
  let x = (pgno * 2654435761 + seed * 40503 + 1) >>> 0 || 1;
  for (let i = 8; i < pageSize; i++) {
    // xorshift32: cheap, deterministic, different for every (pgno, seed)
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    page[i] = i % 64 < 32 ? x & 0xff : 0x61 + (x % 26);
  }
  return page;
}

export interface TxSpec {
  txid: number;
  time: number;
  dbSize: number;
  /** [pgno, seed] per page written */
  pages: [number, number][];
}

/** `count` transactions from `firstTxid`, with an empty one and a repeated pgno among them. */
export function sampleTxs(firstTxid: number, count: number, firstTime = T0): TxSpec[] {
  const txs: TxSpec[] = [];
  for (let i = 0; i < count; i++) {
    const txid = firstTxid + i;
    let pages: [number, number][];
    if (i % 4 === 1) pages = [];
    else if (i % 4 === 2) pages = [[3, txid], [1, txid], [3, txid + 1000]];
    else pages = [[1, txid], [2 + (i % 5), txid]];
    txs.push({ txid, time: firstTime + i * 7, dbSize: 10 + i, pages });
  }
  return txs;
}

export function buildBody(pageSize: number, txs: TxSpec[]): Uint8Array {
  const b = new SegmentBodyBuilder(pageSize);
  for (const tx of txs) {
    for (const [pgno, seed] of tx.pages) b.page(pgno, makePage(pageSize, pgno, seed));
    b.commit(tx.dbSize, tx.txid, tx.time);
  }
  return b.finish();
}

/** Raw body bytes, bypassing the builder's checks, to make bodies the builder would refuse. */
export function rawBody(pageSize: number, records: ({ page: number } | { commit: [number, number, number] })[]): Uint8Array {
  const parts: Uint8Array[] = [];
  for (const r of records) {
    if ('page' in r) {
      const rec = new Uint8Array(4 + pageSize);
      new DataView(rec.buffer).setUint32(0, r.page);
      rec.set(makePage(pageSize, r.page), 4);
      parts.push(rec);
    } else {
      const rec = new Uint8Array(24);
      const v = new DataView(rec.buffer);
      v.setUint32(4, r.commit[0]);
      v.setBigUint64(8, BigInt(r.commit[1]));
      v.setBigUint64(16, BigInt(r.commit[2]));
      parts.push(rec);
    }
  }
  return Buffer.concat(parts);
}

/** Frame arbitrary header and stored body with a correct checksum, to reach the checks behind it. */
export async function frame(magic: string, header: Record<string, unknown>, stored: Uint8Array): Promise<Uint8Array> {
  const prefix = encodePrefix(new TextEncoder().encode(magic), header);
  const out = new Uint8Array(prefix.length + stored.length + 8);
  out.set(prefix);
  out.set(stored, prefix.length);
  writeU64BE(out, out.length - 8, await checksum64(out.subarray(0, out.length - 8)));
  return out;
}

/** Recompute the trailer after editing bytes, so only the edited structure is wrong. */
export async function reseal(bytes: Uint8Array): Promise<Uint8Array> {
  const out = Uint8Array.from(bytes);
  writeU64BE(out, out.length - 8, await checksum64(out.subarray(0, out.length - 8)));
  return out;
}

/** Asserts an OBJECT_CORRUPT PitrError that names `name` and carries a hint; returns it. */
export function assertCorrupt(err: unknown, name: string | undefined, pattern?: RegExp): PitrError {
  assert.ok(err instanceof PitrError, `expected PitrError, got ${String(err)}`);
  assert.equal(err.code, 'OBJECT_CORRUPT', err.message);
  if (name !== undefined) assert.ok(err.message.includes(name), `message should name ${name}: ${err.message}`);
  assert.ok(err.hint && err.hint.length > 10, 'a hint is given');
  if (pattern) assert.match(err.message, pattern);
  return err;
}

export async function rejectsCorrupt(p: Promise<unknown>, name: string | undefined, pattern?: RegExp): Promise<PitrError> {
  try {
    await p;
  } catch (err) {
    return assertCorrupt(err, name, pattern);
  }
  assert.fail('expected OBJECT_CORRUPT, but it succeeded');
}

export function throwsCorrupt(fn: () => unknown, name: string | undefined, pattern?: RegExp): PitrError {
  try {
    fn();
  } catch (err) {
    return assertCorrupt(err, name, pattern);
  }
  assert.fail('expected OBJECT_CORRUPT, but it succeeded');
}

export function bytesEqual(a: Uint8Array, b: Uint8Array): boolean {
  return Buffer.compare(Buffer.from(a.buffer, a.byteOffset, a.byteLength), Buffer.from(b.buffer, b.byteOffset, b.byteLength)) === 0;
}
