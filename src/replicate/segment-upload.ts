import type { StorageClient } from '../storage/storage-client.js';
import type { SegmentEntry } from '../catalog/catalog.js';
import { segmentKey } from '../segment/object-names.js';
import { decodeSegment, encodeSegment, joinSegments, readStoredSegment, type StoredSegment } from '../segment/index.js';
import type { Spool } from './spool.js';

/**
 * Upload the segments of `gen` at the head of `pending` (the spool's, in txid order) as one object:
 * contiguous entries joined up to `maxSegmentBytes` of body (default 64 MiB). Returns the last
 * entry uploaded and the object's size.
 */
export async function uploadMergedSegment(
  replica: StorageClient,
  spool: Spool,
  gen: string,
  pending: readonly SegmentEntry[],
  maxSegmentBytes: number | undefined,
): Promise<{ last: SegmentEntry; bytes: number }> {
  const max = maxSegmentBytes ?? 64 << 20;
  const head = pending[0] as SegmentEntry;
  // A catch-up step goes up alone, under its own key: joined, it would read as app transactions.
  if (head.catchUp) {
    await replica.put(head.key, spool.streamStored(head), { size: head.size });
    return { last: head, bytes: head.size };
  }
  // An entry stored larger than a merged upload may be can only come from one huge transaction
  // and goes up alone anyway: as it is in the spool, streamed and verified on the way. Read
  // whole and joined, it cost the agent its size once more (a 300 MB transaction: 303 MB).
  if (head.size > max && (await spool.readSegmentHeader(head)).compression === 'zstd') {
    await replica.put(segmentKey(gen, head.firstTxid, head.lastTxid, head.firstTime, head.lastTime), spool.streamStored(head), { size: head.size });
    return { last: head, bytes: head.size };
  }
  const parts: StoredSegment[] = [];
  const entries: SegmentEntry[] = [];
  let bodyBytes = 0;
  for (const e of pending) {
    if (e.catchUp) break;
    if (entries.length > 0 && e.firstTxid !== (entries[entries.length - 1] as SegmentEntry).lastTxid + 1) break;
    const part = await spool.readStored(e);
    if (entries.length > 0 && bodyBytes + part.header.bodyLength > max) break;
    parts.push(part);
    entries.push(e);
    bodyBytes += part.header.bodyLength;
  }
  const first = entries[0] as SegmentEntry;
  const last = entries[entries.length - 1] as SegmentEntry;
  for (let i = 0; i < parts.length; i++) parts[i] = await joinablePart(parts[i] as StoredSegment, entries[i] as SegmentEntry);
  const bytes = await joinSegments(parts);
  await replica.put(segmentKey(gen, first.firstTxid, last.lastTxid, first.firstTime, last.lastTime), bytes);
  return { last, bytes: bytes.length };
}

/**
 * A spool entry as joinSegments needs it: as is when the spool compressed it (zstd, the usual
 * case), else (stored raw under a WAL reset's write lock, or deflated by an earlier pitr)
 * decompressed and compressed the way the spool compresses, so only that entry is compressed here
 * and the rest of the batch is joined.
 */
async function joinablePart(part: StoredSegment, entry: SegmentEntry): Promise<StoredSegment> {
  if (part.header.compression === 'zstd') return part;
  const { header, body } = await decodeSegment(part.bytes, `spool ${entry.key}`);
  const { generation, pageSize, firstTxid, lastTxid, firstTime, lastTime } = header;
  return readStoredSegment(await encodeSegment({ generation, pageSize, firstTxid, lastTxid, firstTime, lastTime, compression: 'zstd' }, body));
}

