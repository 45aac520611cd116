/** The segment and snapshot formats and object names: the public surface of src/segment/. */
export type { Compression, SegmentHeader, TxRecord } from './segment-types.js';
export { SegmentBodyBuilder } from './segment-builder.js';
export { readSegmentHeader, type SegmentHeaderInput } from './segment-header.js';
export { iterateTransactions } from './segment-records.js';
export { encodeSegment, encodeSegmentChunks, type EncodeSegmentOptions } from './segment-encode.js';
export { decodeSegment, readStoredSegment, verifiedStoredChunks, type DecodeOptions, type DecodedSegment, type StoredSegment } from './segment-decode.js';
export { canJoin, joinSegments } from './segment-join.js';
export { readSnapshotHeader, type SnapshotHeader, type SnapshotHeaderInput } from './snapshot-format.js';
export { snapshotChunks, writeSnapshot, type WriteSnapshotOptions } from './snapshot-write.js';
export { readSnapshot, type OnPages, type ReadSnapshotOptions } from './snapshot-read.js';
export {
  GENERATIONS_PREFIX,
  SEGMENT_SUFFIX,
  SNAPSHOT_SUFFIX,
  generationPrefix,
  generationTime,
  isGenerationId,
  newGenerationId,
  objectKey,
  parseObjectKey,
  segmentKey,
  segmentsPrefix,
  snapshotKey,
  snapshotsPrefix,
  type ObjectName,
} from './object-names.js';
export { DEFAULT_DEFLATE_LEVEL, MAX_HEADER_LENGTH, SEGMENT_FORMAT_VERSION, SNAPSHOT_FORMAT_VERSION } from './framing.js';
