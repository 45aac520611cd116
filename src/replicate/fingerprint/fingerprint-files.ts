import { closeSync, ftruncateSync, openSync, fstatSync, writeSync } from 'node:fs';
import { readFile, unlink } from 'node:fs/promises';
import { endianness } from 'node:os';
import { join } from 'node:path';
import { errnoCode } from '../../errors.js';
import { checksum64 } from '../../segment/framing.js';
import { writeFileAtomic } from '../../util/fs-atomic.js';

/*
 * The fingerprint's two files in the state directory (local state, never shipped; little-endian):
 *
 * fingerprint.base: the page hashes as of one txid, written whole and atomically.
 *   0  'PITRFPB1'   8  u32 pageSize   12 u32 0   16 generation (16 ASCII)
 *   32 u64 txid     40 u64 commit time of txid   48 u64 count
 *   56 count x u64 page hashes, then u64 XXH64 of everything before it.
 *
 * fingerprint.journal: what changed since, one record per spool entry, appended in txid order.
 *   header: 'PITRFPJ1', u32 pageSize, u32 0, generation (16 ASCII): 32 bytes.
 *   record: u32 L, then L bytes: u64 firstTxid, u64 lastTxid, u64 commit time of lastTxid, then
 *   entries of 12 bytes (u32 pgno, u64 page hash; pgno 0 = a commit, the u64 its size in pages),
 *   then u64 XXH64 of the L - 8 bytes before it.
 *
 * A record is appended before the spool entry it describes is written, without an fsync of its own:
 * after a kill the journal is always at least as far as the spool; after a power cut it may be
 * behind, which load() notices (the txids do not reach the saved position) and reports as unusable.
 */

export const BASE_FILE = 'fingerprint.base';
export const JOURNAL_FILE = 'fingerprint.journal';
const BASE_MAGIC = Buffer.from('PITRFPB1');
const JOURNAL_MAGIC = Buffer.from('PITRFPJ1');
const BASE_HEADER = 56;
export const JOURNAL_HEADER = 32;
export const ENTRY_BYTES = 12;
const RECORD_FIXED = 4 + 24 + 8;

export interface BaseFile {
  generation: string;
  pageSize: number;
  txid: number;
  lastTime: number;
  hashes: BigUint64Array;
}

export interface JournalRecord {
  firstTxid: number;
  lastTxid: number;
  lastTime: number;
  /** Entries, ENTRY_BYTES each (see above). */
  entries: Buffer;
}

/** Fingerprints are stored in the machine's byte order; only little-endian machines are supported. */
export const fingerprintSupported = endianness() === 'LE';

export async function writeBase(stateDir: string, b: BaseFile): Promise<void> {
  const bytes = Buffer.alloc(BASE_HEADER + b.hashes.length * 8 + 8);
  BASE_MAGIC.copy(bytes, 0);
  bytes.writeUInt32LE(b.pageSize, 8);
  bytes.write(b.generation, 16, 'ascii');
  bytes.writeBigUInt64LE(BigInt(b.txid), 32);
  bytes.writeBigUInt64LE(BigInt(b.lastTime), 40);
  bytes.writeBigUInt64LE(BigInt(b.hashes.length), 48);
  Buffer.from(b.hashes.buffer, b.hashes.byteOffset, b.hashes.byteLength).copy(bytes, BASE_HEADER);
  const end = bytes.length - 8;
  bytes.writeBigUInt64LE(await checksum64(bytes.subarray(0, end)), end);
  await writeFileAtomic(join(stateDir, BASE_FILE), bytes);
}

/** The base file, null when there is none; a string saying why when it cannot be used. */
export async function readBase(stateDir: string): Promise<BaseFile | null | string> {
  let bytes: Buffer;
  try {
    bytes = await readFile(join(stateDir, BASE_FILE));
  } catch (err) {
    if (errnoCode(err) === 'ENOENT') return null;
    throw err;
  }
  if (bytes.length < BASE_HEADER + 8 || !bytes.subarray(0, 8).equals(BASE_MAGIC)) return 'its base file is not one pitr wrote';
  const count = Number(bytes.readBigUInt64LE(48));
  if (bytes.length !== BASE_HEADER + count * 8 + 8) return 'its base file has the wrong length';
  const end = bytes.length - 8;
  if ((await checksum64(bytes.subarray(0, end))) !== bytes.readBigUInt64LE(end)) return 'its base file fails its checksum';
  // Copied out: a view of readFile's buffer could be unaligned for a BigUint64Array.
  const hashes = new BigUint64Array(count);
  Buffer.from(hashes.buffer).set(bytes.subarray(BASE_HEADER, end));
  return {
    pageSize: bytes.readUInt32LE(8),
    generation: bytes.toString('ascii', 16, 32),
    txid: Number(bytes.readBigUInt64LE(32)),
    lastTime: Number(bytes.readBigUInt64LE(40)),
    hashes,
  };
}

export async function removeBase(stateDir: string): Promise<void> {
  await unlink(join(stateDir, BASE_FILE)).catch((err: unknown) => {
    if (errnoCode(err) !== 'ENOENT') throw err;
  });
}

function journalHeader(generation: string, pageSize: number): Buffer {
  const h = Buffer.alloc(JOURNAL_HEADER);
  JOURNAL_MAGIC.copy(h, 0);
  h.writeUInt32LE(pageSize, 8);
  h.write(generation, 16, 'ascii');
  return h;
}

/** Start an empty journal for `generation` (atomically: a crash leaves the old one or the new one). */
export async function resetJournal(stateDir: string, generation: string, pageSize: number): Promise<void> {
  await writeFileAtomic(join(stateDir, JOURNAL_FILE), journalHeader(generation, pageSize));
}

/**
 * Append one record; returns the journal's length before it (for truncateJournal) and after it.
 * Synchronous and without an fsync (see above): capture calls this once per spool entry.
 */
export async function appendRecord(stateDir: string, r: JournalRecord): Promise<{ before: number; after: number }> {
  const body = Buffer.alloc(24 + r.entries.length);
  body.writeBigUInt64LE(BigInt(r.firstTxid), 0);
  body.writeBigUInt64LE(BigInt(r.lastTxid), 8);
  body.writeBigUInt64LE(BigInt(r.lastTime), 16);
  r.entries.copy(body, 24);
  const head = Buffer.alloc(4);
  head.writeUInt32LE(body.length + 8, 0);
  const tail = Buffer.alloc(8);
  tail.writeBigUInt64LE(await checksum64(body), 0);
  const fd = openSync(join(stateDir, JOURNAL_FILE), 'r+');
  const before = fstatSync(fd).size;
  try {
    let at = before;
    for (const part of [head, body, tail]) {
      for (let off = 0; off < part.length; ) {
        const n = writeSync(fd, part, off, part.length - off, at);
        off += n;
        at += n;
      }
    }
    return { before, after: at };
  } catch (err) {
    // A torn record (the disk filled up half way) would end every later load at this point.
    try {
      ftruncateSync(fd, before);
    } catch {
      // A load stops at the torn record and says so; nothing more can be done here.
    }
    throw err;
  } finally {
    closeSync(fd);
  }
}

/** Cut the journal back to `length` bytes (a record whose spool entry was never written). */
export function truncateJournal(stateDir: string, length: number): void {
  const fd = openSync(join(stateDir, JOURNAL_FILE), 'r+');
  try {
    ftruncateSync(fd, length);
  } finally {
    closeSync(fd);
  }
}

/**
 * The journal's records for `generation` and `pageSize`, in file order, up to the first one that is
 * incomplete or fails its checksum (a torn append); [] when the journal is missing or another's.
 */
export async function readJournal(stateDir: string, generation: string, pageSize: number): Promise<{ records: JournalRecord[]; bytes: number }> {
  let bytes: Buffer;
  try {
    bytes = await readFile(join(stateDir, JOURNAL_FILE));
  } catch (err) {
    if (errnoCode(err) === 'ENOENT') return { records: [], bytes: 0 };
    throw err;
  }
  if (bytes.length < JOURNAL_HEADER || !bytes.subarray(0, JOURNAL_HEADER).equals(journalHeader(generation, pageSize))) return { records: [], bytes: bytes.length };
  const records: JournalRecord[] = [];
  let at = JOURNAL_HEADER;
  while (at + RECORD_FIXED <= bytes.length) {
    const len = bytes.readUInt32LE(at);
    if (len < 32 || (len - 32) % ENTRY_BYTES !== 0 || at + 4 + len > bytes.length) break;
    const body = bytes.subarray(at + 4, at + 4 + len - 8);
    if ((await checksum64(body)) !== bytes.readBigUInt64LE(at + 4 + len - 8)) break;
    records.push({
      firstTxid: Number(body.readBigUInt64LE(0)),
      lastTxid: Number(body.readBigUInt64LE(8)),
      lastTime: Number(body.readBigUInt64LE(16)),
      entries: body.subarray(24),
    });
    at += 4 + len;
  }
  return { records, bytes: bytes.length };
}
