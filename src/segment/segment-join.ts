import { isJoinable, joinDeflated } from './deflate-parallel.js';
import { PitrError } from '../errors.js';
import { SEGMENT_FORMAT_VERSION } from './framing.js';
import { frameSegment } from './segment-encode.js';
import type { StoredSegment } from './segment-decode.js';
import type { SegmentHeader } from './segment-types.js';

/**
 * True when joinSegments can merge this segment: zstd (any), or deflated and ending as
 * encodeSegment's `joinable` ends.
 */
export function canJoin(s: StoredSegment): boolean {
  return s.header.compression === 'zstd' || (s.header.compression === 'deflate' && isJoinable(s.stored));
}

/**
 * One segment object holding the transactions of several consecutive joinable segments, built
 * from their compressed bodies as they are: zstd frames are concatenated (a zstd stream may hold
 * several), deflate streams joined (joinDeflated); the header covers the whole chain, is of the
 * current version, and the checksum is computed anew. Nothing is decompressed or compressed again,
 * so merging costs a copy of the compressed bytes. The parts must form one chain (CHAIN_BROKEN
 * otherwise), satisfy canJoin and share one compression (RangeError otherwise). Their bodies were
 * checked when they were encoded; the merged body is checked again when it is decoded.
 */
export async function joinSegments(parts: readonly StoredSegment[]): Promise<Uint8Array> {
  if (parts.length === 0) throw new RangeError('joinSegments: nothing to join');
  checkChain(parts.map((p) => p.header));
  const compression = (parts[0] as StoredSegment).header.compression;
  if (!parts.every((p) => canJoin(p) && p.header.compression === compression)) {
    throw new RangeError('joinSegments: every part must be joinable (zstd, or deflate ending with a sync flush), all with one compression');
  }
  // One part is already the object wanted: same header, same body, checksum verified on read.
  if (parts.length === 1) return (parts[0] as StoredSegment).bytes;
  // A catch-up step stays an object of its own: its header and key say what it is.
  if (parts.some((p) => p.header.catchUpFrom !== undefined)) throw new RangeError('joinSegments: a catch-up step cannot be joined with other segments');
  const first = (parts[0] as StoredSegment).header;
  const last = (parts[parts.length - 1] as StoredSegment).header;
  let bodyLength = 0;
  for (const p of parts) bodyLength += p.header.bodyLength;
  const header: SegmentHeader = { ...first, version: SEGMENT_FORMAT_VERSION, lastTxid: last.lastTxid, lastTime: last.lastTime, bodyLength };
  const stored = parts.map((p) => p.stored);
  return frameSegment(header, compression === 'zstd' ? stored : joinDeflated(stored));
}

function chainBroken(detail: string): PitrError {
  return new PitrError(
    'CHAIN_BROKEN',
    `segments do not form a contiguous chain: ${detail}`,
    'Pass the decoded segments of one generation in txid order, without gaps or overlaps.',
  );
}

/** Same generation and page size, each starting at the txid after the previous one ended. */
function checkChain(headers: readonly SegmentHeader[]): void {
  const first = headers[0] as SegmentHeader;
  for (let i = 1; i < headers.length; i++) {
    const h = headers[i] as SegmentHeader;
    const p = headers[i - 1] as SegmentHeader;
    const what = `segment ${h.firstTxid}..${h.lastTxid} after ${p.firstTxid}..${p.lastTxid}`;
    if (h.generation !== first.generation || h.pageSize !== first.pageSize) {
      throw chainBroken(`${what} belongs to generation ${h.generation} (page size ${h.pageSize}), not ${first.generation} (page size ${first.pageSize})`);
    }
    if (h.firstTxid !== p.lastTxid + 1) throw chainBroken(`${what}: txids must continue at ${p.lastTxid + 1}`);
    if (h.firstTime < p.lastTime) throw chainBroken(`${what}: commit times go backwards`);
  }
}
