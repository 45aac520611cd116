/** The segment and snapshot formats and object names: the public surface of src/segment/. */
export type { Compression, SegmentHeader, TxRecord } from './segment-types.js';
export { SegmentBodyBuilder } from './segment-builder.js';
export {
  decodeSegment,
  encodeSegment,
  iterateTransactions,
  readSegmentHeader,
  type DecodedSegment,
  type EncodeSegmentOptions,
  type SegmentHeaderInput,
} from './segment-codec.js';
export {
  readSnapshot,
  readSnapshotHeader,
  writeSnapshot,
  type ReadSnapshotOptions,
  type SnapshotHeader,
  type SnapshotHeaderInput,
  type WriteSnapshotOptions,
} from './snapshot-codec.js';
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
