import { PitrError } from '../errors.js';
import {
  PREFIX_LENGTH,
  type Fail,
  checkMagic,
  checkVersion,
  compressionField,
  corrupt,
  failCorrupt,
  generationField,
  intField,
  kindField,
  pageSizeField,
  readHeaderLength,
  unpackHeader,
} from './framing.js';
import { MAX_U32 } from './segment-body.js';
import { parseObjectKey } from './object-names.js';
import type { Compression } from './segment-types.js';

/** Decoded header of a snapshot object; see docs/FORMAT.md. */
export interface SnapshotHeader {
  /** 3 is written; 2 (no 'zstd') and 1 (a deflate body as one stream) are still read. */
  version: 1 | 2 | 3;
  kind: 'snapshot';
  generation: string;
  pageSize: number;
  /** The last transaction the image includes; 0 means before the generation's first transaction. */
  txid: number;
  commitTime: number;
  dbSizePages: number;
  compression: Compression;
  /**
   * Version 2 and later, compressed bodies only: the body is a series of independently compressed
   * chunks of this many pages each (the last may hold fewer), so that memory stays bounded and a
   * reader may decompress several at once.
   */
  chunkPages?: number;
}

export type SnapshotHeaderInput = Omit<SnapshotHeader, 'version' | 'kind' | 'chunkPages'>;

/** Length prefix of each chunk of a chunked (version 2 and later) compressed body. */
export const CHUNK_LENGTH_BYTES = 4;
const SAFE = Number.MAX_SAFE_INTEGER;

export function headerFromRaw(raw: Record<string, unknown>, version: 1 | 2 | 3, fail: Fail): SnapshotHeader {
  const header: SnapshotHeader = {
    version,
    kind: 'snapshot',
    generation: generationField(raw, fail),
    pageSize: pageSizeField(raw, fail),
    txid: intField(raw, 'txid', 0, SAFE, fail),
    commitTime: intField(raw, 'commitTime', 0, SAFE, fail),
    // A WAL-mode database always has page 1, which records the journal mode.
    dbSizePages: intField(raw, 'dbSizePages', 1, MAX_U32, fail),
    compression: compressionField(raw, 'snapshot', version, fail),
  };
  if (version >= 2 && header.compression !== 'none') header.chunkPages = intField(raw, 'chunkPages', 1, MAX_U32, fail);
  return header;
}

export function aborted(signal: AbortSignal | undefined, cause: unknown): PitrError {
  return new PitrError('ABORTED', 'snapshot transfer was aborted', undefined, { cause: signal?.reason ?? cause });
}

/** Header-only parse of the first bytes of a snapshot (the first 4096 bytes always suffice). No checksum. */
export function readSnapshotHeader(bytes: Uint8Array, name?: string): SnapshotHeader {
  checkMagic(bytes, 'snapshot', name);
  if (bytes.length < PREFIX_LENGTH) throw corrupt('snapshot', name, `truncated: ${bytes.length} bytes, too short for the header length`);
  const len = readHeaderLength(bytes, 'snapshot', name);
  if (bytes.length < PREFIX_LENGTH + len) {
    throw corrupt('snapshot', name, `truncated: the header needs ${PREFIX_LENGTH + len} bytes, only ${bytes.length} available`);
  }
  return parseHeaderBytes(bytes.subarray(PREFIX_LENGTH, PREFIX_LENGTH + len), name);
}

export function parseHeaderBytes(headerBytes: Uint8Array, name: string | undefined): SnapshotHeader {
  const raw = unpackHeader(headerBytes, 'snapshot', name);
  const version = checkVersion(raw, 'snapshot', name) as 1 | 2 | 3;
  const fail = failCorrupt('snapshot', name);
  kindField(raw, 'snapshot', fail);
  const header = headerFromRaw(raw, version, fail);
  // Restore plans from keys alone: an object under a key that does not describe it must not be used.
  const key = name === undefined ? null : parseObjectKey(name);
  if (key !== null && (key.kind !== 'snapshot' || key.generation !== header.generation || key.txid !== header.txid || key.commitTime !== header.commitTime)) {
    fail(`its header (generation ${header.generation}, txid ${header.txid}, time ${header.commitTime}) does not match its key`);
  }
  return header;
}
