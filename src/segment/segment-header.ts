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
import { COMMIT_RECORD_LENGTH } from './segment-body.js';
import { parseObjectKey } from './object-names.js';
import type { SegmentHeader } from './segment-types.js';

/** What encodeSegment needs besides the body; version, kind and bodyLength are derived. */
export type SegmentHeaderInput = Omit<SegmentHeader, 'version' | 'kind' | 'bodyLength'>;

const SAFE = Number.MAX_SAFE_INTEGER;

export function headerFromRaw(raw: Record<string, unknown>, version: 1 | 2, fail: Fail, withBodyLength: boolean): SegmentHeader {
  const generation = generationField(raw, fail);
  const pageSize = pageSizeField(raw, fail);
  const firstTxid = intField(raw, 'firstTxid', 1, SAFE, fail);
  const lastTxid = intField(raw, 'lastTxid', 1, SAFE, fail);
  const firstTime = intField(raw, 'firstTime', 0, SAFE, fail);
  const lastTime = intField(raw, 'lastTime', 0, SAFE, fail);
  const compression = compressionField(raw, 'segment', version, fail);
  const bodyLength = withBodyLength ? intField(raw, 'bodyLength', COMMIT_RECORD_LENGTH, SAFE, fail) : 0;
  if (lastTxid < firstTxid) fail(`lastTxid ${lastTxid} is before firstTxid ${firstTxid}`);
  if (lastTime < firstTime) fail(`lastTime ${lastTime} is before firstTime ${firstTime}`);
  const catchUpFrom = raw.catchUpFrom === undefined ? undefined : intField(raw, 'catchUpFrom', 0, SAFE, fail);
  if (catchUpFrom !== undefined) {
    if (firstTxid !== lastTxid) fail(`a catch-up step holds one transaction, not ${firstTxid}..${lastTxid}`);
    if (catchUpFrom > firstTime) fail(`catchUpFrom ${catchUpFrom} is after the step's commit time ${firstTime}`);
  }
  return {
    version,
    kind: 'segment',
    generation,
    pageSize,
    firstTxid,
    lastTxid,
    firstTime,
    lastTime,
    compression,
    bodyLength,
    ...(catchUpFrom !== undefined && { catchUpFrom }),
  };
}

/** Header-only parse of a byte prefix of a segment (the first 4096 bytes always suffice). No checksum. */
export function readSegmentHeader(bytes: Uint8Array, name?: string): SegmentHeader {
  return parseHeader(bytes, name).header;
}

export function parseHeader(bytes: Uint8Array, name: string | undefined): { header: SegmentHeader; end: number } {
  checkMagic(bytes, 'segment', name);
  if (bytes.length < PREFIX_LENGTH) throw corrupt('segment', name, `truncated: ${bytes.length} bytes, too short for the header length`);
  const len = readHeaderLength(bytes, 'segment', name);
  const end = PREFIX_LENGTH + len;
  if (bytes.length < end) {
    throw corrupt('segment', name, `truncated: the header needs ${end} bytes, only ${bytes.length} available`);
  }
  const raw = unpackHeader(bytes.subarray(PREFIX_LENGTH, end), 'segment', name);
  const version = checkVersion(raw, 'segment', name) as 1 | 2;
  const fail = failCorrupt('segment', name);
  kindField(raw, 'segment', fail);
  const header = headerFromRaw(raw, version, fail, true);
  checkAgainstKey(header, name, fail);
  return { header, end };
}

/**
 * Restore plans from keys alone, so an object stored under a key that does not describe it (a
 * backend or operator mix-up) must not be applied as if it were what the key says.
 */
function checkAgainstKey(h: SegmentHeader, name: string | undefined, fail: Fail): void {
  const key = name === undefined ? null : parseObjectKey(name);
  if (key === null) return;
  if (
    key.kind !== 'segment' ||
    key.generation !== h.generation ||
    key.firstTxid !== h.firstTxid ||
    key.lastTxid !== h.lastTxid ||
    key.firstTime !== h.firstTime ||
    key.lastTime !== h.lastTime ||
    key.catchUp !== (h.catchUpFrom !== undefined)
  ) {
    fail(
      `its header (generation ${h.generation}, txids ${h.firstTxid}..${h.lastTxid}, times ${h.firstTime}..${h.lastTime}${h.catchUpFrom !== undefined ? ', a catch-up step' : ''}) ` +
        'does not match its key',
    );
  }
}
