import xxhash from 'xxhash-wasm';
import { pack, unpack } from 'msgpackr';
import { PitrError } from '../errors.js';
import type { Compression } from './segment-types.js';

/**
 * Pieces shared by the segment and snapshot formats: the framing
 * `magic | u32 BE header length | msgpack header | body | xxhash64 BE trailer`,
 * header field checks, and the checksum. docs/FORMAT.md is the normative description.
 */

/** The version pitr writes for each kind of object (docs/FORMAT.md "Versions"). */
export const SEGMENT_FORMAT_VERSION = 2;
export const SNAPSHOT_FORMAT_VERSION = 3;
export const SEGMENT_MAGIC: Uint8Array = new TextEncoder().encode('PITRSEG1');
export const SNAPSHOT_MAGIC: Uint8Array = new TextEncoder().encode('PITRSNP1');
export const MAGIC_LENGTH = 8;
/** Magic plus the u32 header length. */
export const PREFIX_LENGTH = 12;
export const TRAILER_LENGTH = 8;
/** Chosen so that the first 4096 bytes of any object always hold its whole header (one small range GET). */
export const MAX_HEADER_LENGTH = 4096 - PREFIX_LENGTH;
export const MIN_PAGE_SIZE = 512;
export const MAX_PAGE_SIZE = 65536;
export const DEFAULT_DEFLATE_LEVEL = 1;

const GENERATION_RE = /^[0-9a-f]{16}$/;
export const U32_MAX = 0xffff_ffff;

export type ObjectKind = 'segment' | 'snapshot';

/** Every version readers accept, oldest first: what earlier pitr versions wrote still restores. */
const READABLE_VERSIONS: Record<ObjectKind, readonly number[]> = { segment: [1, 2], snapshot: [1, 2, 3] };

/** The first version of each kind whose bodies may be 'zstd' (older readers do not know it). */
const FIRST_ZSTD_VERSION: Record<ObjectKind, number> = { segment: 2, snapshot: 3 };

// ---------------------------------------------------------------------------------------------
// Checksum

export type XXHashApi = Awaited<ReturnType<typeof xxhash>>;
export type Hasher64 = ReturnType<XXHashApi['create64']>;

let apiPromise: Promise<XXHashApi> | undefined;

/** The xxhash-wasm instance, instantiated once per process. */
export function xxhashApi(): Promise<XXHashApi> {
  if (apiPromise === undefined) {
    apiPromise = xxhash().catch((err: unknown) => {
      // A failed instantiation must not poison every later call.
      apiPromise = undefined;
      throw err;
    });
  }
  return apiPromise;
}

/*
 * xxhash-wasm copies each input into its wasm memory, which grows to the largest input ever seen
 * and never shrinks; feeding bounded slices keeps that memory at HASH_SLICE however large the
 * object is.
 */
const HASH_SLICE = 1 << 20;

/** Feed `bytes` to a streaming hasher in bounded slices. */
export function hashUpdate(hasher: Hasher64, bytes: Uint8Array): void {
  for (let off = 0; off < bytes.length; off += HASH_SLICE) {
    hasher.update(bytes.subarray(off, Math.min(bytes.length, off + HASH_SLICE)));
  }
}

/** xxhash64 (seed 0) of the concatenation of `parts`. */
export async function checksum64(...parts: Uint8Array[]): Promise<bigint> {
  const api = await xxhashApi();
  if (parts.length === 1 && parts[0]!.length <= HASH_SLICE) return api.h64Raw(parts[0]!);
  const hasher = api.create64();
  for (const p of parts) hashUpdate(hasher, p);
  return hasher.digest();
}

export function writeU64BE(target: Uint8Array, offset: number, value: bigint): void {
  new DataView(target.buffer, target.byteOffset, target.byteLength).setBigUint64(offset, value, false);
}

export function readU64BE(source: Uint8Array, offset: number): bigint {
  return new DataView(source.buffer, source.byteOffset, source.byteLength).getBigUint64(offset, false);
}

export function hex64(v: bigint): string {
  return '0x' + v.toString(16).padStart(16, '0');
}

// ---------------------------------------------------------------------------------------------
// Errors

function describe(kind: ObjectKind, name: string | undefined): string {
  return name === undefined ? `${kind} object` : `${kind} ${name}`;
}

const CORRUPT_HINT =
  'The object is damaged or is not a pitr object; pitr will not apply it. Restore from another ' +
  'replica that holds the same transactions, or choose a target before this object. Check the ' +
  'storage backend for truncated uploads or bit rot.';

/** The one error every malformed object turns into. */
export function corrupt(kind: ObjectKind, name: string | undefined, detail: string, cause?: unknown): PitrError {
  return new PitrError('OBJECT_CORRUPT', `${describe(kind, name)} is corrupt: ${detail}`, CORRUPT_HINT, {
    cause,
  });
}

export function unsupportedVersion(kind: ObjectKind, name: string | undefined, version: unknown, alsoBad: string): PitrError {
  const readable = READABLE_VERSIONS[kind];
  return new PitrError(
    'OBJECT_CORRUPT',
    `${describe(kind, name)} has format version ${String(version)}, which this pitr does not support ` +
      `(it reads ${readable.length === 1 ? 'version' : 'versions'} ${readable.join(' and ')})${alsoBad}`,
    'If a newer pitr wrote this replica, upgrade pitr on this machine; otherwise the object is damaged.',
  );
}

// ---------------------------------------------------------------------------------------------
// Header encoding

/*
 * msgpackr encodes integers above 2^32 as float64. Readers in other languages expect integers, so
 * such values are written as BigInt, which msgpackr stores as int64.
 */
function toWire(value: unknown): unknown {
  return typeof value === 'number' && Number.isInteger(value) && value > U32_MAX ? BigInt(value) : value;
}

/** `magic | u32 BE length | msgpack(header)`, with keys in the order given. */
export function encodePrefix(magic: Uint8Array, header: Record<string, unknown>): Uint8Array {
  const wire: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(header)) wire[k] = toWire(v);
  const packed = pack(wire);
  if (packed.length > MAX_HEADER_LENGTH) throw new RangeError(`header too long: ${packed.length} bytes`);
  const out = new Uint8Array(PREFIX_LENGTH + packed.length);
  out.set(magic, 0);
  new DataView(out.buffer, out.byteOffset, out.byteLength).setUint32(MAGIC_LENGTH, packed.length, false);
  out.set(packed, PREFIX_LENGTH);
  return out;
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/** Checks the magic of the first 8 bytes, naming the other pitr kind when that is what it is. */
export function checkMagic(bytes: Uint8Array, kind: ObjectKind, name: string | undefined): void {
  if (bytes.length < MAGIC_LENGTH) {
    throw corrupt(kind, name, `truncated: ${bytes.length} bytes, too short to hold the magic`);
  }
  const want = kind === 'segment' ? SEGMENT_MAGIC : SNAPSHOT_MAGIC;
  const other = kind === 'segment' ? SNAPSHOT_MAGIC : SEGMENT_MAGIC;
  const got = bytes.subarray(0, MAGIC_LENGTH);
  if (sameBytes(got, want)) return;
  if (sameBytes(got, other)) {
    throw corrupt(kind, name, `it is a ${kind === 'segment' ? 'snapshot' : 'segment'}, not a ${kind}`);
  }
  const printable = /^[\x20-\x7e]{8}$/.test(Buffer.from(got).toString('latin1'));
  const shown = printable ? JSON.stringify(Buffer.from(got).toString('latin1')) : Buffer.from(got).toString('hex');
  throw corrupt(kind, name, `wrong magic ${shown} (expected "${Buffer.from(want).toString('latin1')}")`);
}

/** Header length from the 12-byte prefix (magic already checked), bounds-checked. */
export function readHeaderLength(prefix: Uint8Array, kind: ObjectKind, name: string | undefined): number {
  const len = new DataView(prefix.buffer, prefix.byteOffset, prefix.byteLength).getUint32(MAGIC_LENGTH, false);
  if (len === 0 || len > MAX_HEADER_LENGTH) {
    throw corrupt(kind, name, `header length ${len} is outside 1..${MAX_HEADER_LENGTH}`);
  }
  return len;
}

/** msgpack-decode header bytes into a plain record; anything else is corruption. */
export function unpackHeader(bytes: Uint8Array, kind: ObjectKind, name: string | undefined): Record<string, unknown> {
  let value: unknown;
  try {
    value = unpack(bytes);
  } catch (err) {
    throw corrupt(kind, name, 'header is not valid msgpack', err);
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value) || value instanceof Map) {
    throw corrupt(kind, name, 'header is not a msgpack map with string keys');
  }
  return value as Record<string, unknown>;
}

/** The header's version field if the prefix parses at all; never throws (for diagnostics). */
export function peekVersion(bytes: Uint8Array): unknown {
  try {
    if (bytes.length < PREFIX_LENGTH) return undefined;
    const len = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength).getUint32(MAGIC_LENGTH, false);
    if (len === 0 || len > MAX_HEADER_LENGTH || bytes.length < PREFIX_LENGTH + len) return undefined;
    const v: unknown = unpack(bytes.subarray(PREFIX_LENGTH, PREFIX_LENGTH + len));
    return typeof v === 'object' && v !== null ? (v as Record<string, unknown>)['version'] : undefined;
  } catch {
    return undefined;
  }
}

/** The version as a number when readers of `kind` accept it, else undefined. */
export function knownVersion(kind: ObjectKind, v: unknown): number | undefined {
  const n = typeof v === 'bigint' ? Number(v) : v;
  return typeof n === 'number' && READABLE_VERSIONS[kind].includes(n) ? n : undefined;
}

/**
 * Returns the header's version, or refuses one this pitr cannot read. `alsoBad` lets a caller say
 * the checksum failed too, because a flipped bit in the version field must not read as "newer
 * pitr" alone.
 */
export function checkVersion(raw: Record<string, unknown>, kind: ObjectKind, name: string | undefined, alsoBad = ''): number {
  const v = raw['version'];
  const known = knownVersion(kind, v);
  if (known !== undefined) return known;
  if (v === undefined) throw corrupt(kind, name, 'header has no version field');
  throw unsupportedVersion(kind, name, v, alsoBad);
}

// ---------------------------------------------------------------------------------------------
// Header field checks, shared by encoders (bad arguments: RangeError) and decoders (corruption)

export type Fail = (detail: string) => never;

export function failRange(what: string): Fail {
  return (detail) => {
    throw new RangeError(`${what}: ${detail}`);
  };
}

export function failCorrupt(kind: ObjectKind, name: string | undefined): Fail {
  return (detail) => {
    throw corrupt(kind, name, detail);
  };
}

/** An integer field in [min, max] (max at most 2^53-1); msgpack int64 arrives as bigint. */
export function intField(raw: Record<string, unknown>, key: string, min: number, max: number, fail: Fail): number {
  let v = raw[key];
  if (typeof v === 'bigint' && v >= BigInt(min) && v <= BigInt(max)) v = Number(v);
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) {
    return fail(`${key} must be an integer in ${min}..${max}, got ${describeValue(v)}`);
  }
  return v;
}

function describeValue(v: unknown): string {
  if (typeof v === 'string') return JSON.stringify(v.length > 40 ? v.slice(0, 40) + '...' : v);
  if (typeof v === 'number' || typeof v === 'bigint' || typeof v === 'boolean') return String(v);
  return v === null ? 'null' : v === undefined ? 'nothing' : typeof v;
}

export function generationField(raw: Record<string, unknown>, fail: Fail): string {
  const g = raw['generation'];
  if (typeof g !== 'string' || !GENERATION_RE.test(g)) {
    return fail(`generation must be 16 lowercase hex characters, got ${describeValue(g)}`);
  }
  return g;
}

export function pageSizeField(raw: Record<string, unknown>, fail: Fail): number {
  const ps = intField(raw, 'pageSize', MIN_PAGE_SIZE, MAX_PAGE_SIZE, fail);
  // SQLite only uses powers of two; anything else cannot have come from a real database.
  if ((ps & (ps - 1)) !== 0) return fail(`pageSize must be a power of two, got ${ps}`);
  return ps;
}

export function compressionField(raw: Record<string, unknown>, kind: ObjectKind, version: number, fail: Fail): Compression {
  const c = raw['compression'];
  if (c !== 'none' && c !== 'deflate' && c !== 'zstd') return fail(`compression must be "none", "deflate" or "zstd", got ${describeValue(c)}`);
  if (c === 'zstd' && version < FIRST_ZSTD_VERSION[kind]) return fail(`compression "zstd" needs format version ${FIRST_ZSTD_VERSION[kind]} or later, the header says ${version}`);
  return c;
}

export function kindField(raw: Record<string, unknown>, kind: ObjectKind, fail: Fail): void {
  if (raw['kind'] !== kind) fail(`header kind is ${describeValue(raw['kind'])}, expected "${kind}"`);
}

export function checkLevel(level: number): void {
  if (!Number.isInteger(level) || level < 0 || level > 9) {
    throw new RangeError(`deflate level must be an integer 0..9, got ${level}`);
  }
}

