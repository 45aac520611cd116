/**
 * Record layout of a segment body (before compression), shared by the builder and the codec:
 *   page record:   u32 BE pgno (>= 1) | pageSize bytes
 *   commit record: u32 BE 0 | u32 BE dbSizePages | u64 BE txid | u64 BE commitTimeMs
 */

export const RECORD_TAG_LENGTH = 4;
export const COMMIT_RECORD_LENGTH = 24;
export const MAX_U32 = 0xffff_ffff;

const TWO_32 = 0x1_0000_0000;
// Largest high word for which hi * 2^32 + lo stays a safe integer.
const MAX_SAFE_HI = 0x1f_ffff;

/** Write a non-negative safe integer as u64 BE without going through BigInt (hot path). */
export function setU53(view: DataView, offset: number, value: number): void {
  view.setUint32(offset, Math.floor(value / TWO_32), false);
  view.setUint32(offset + 4, value >>> 0, false);
}

/** Read a u64 BE; undefined when it does not fit in a safe integer. */
export function getU53(view: DataView, offset: number): number | undefined {
  const hi = view.getUint32(offset, false);
  if (hi > MAX_SAFE_HI) return undefined;
  return hi * TWO_32 + view.getUint32(offset + 4, false);
}

export function isSafeNonNegInt(v: number): boolean {
  return Number.isSafeInteger(v) && v >= 0;
}
