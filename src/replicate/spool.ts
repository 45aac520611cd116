import type { LocalStore } from '../storage/local-store.js';
import { buildCatalog, type SegmentEntry, type SnapshotEntry } from '../catalog/catalog.js';
import { segmentKey, snapshotKey } from '../segment/object-names.js';
import { encodeSegment, encodeSegmentChunks, readSegmentHeader, readStoredSegment, verifiedStoredChunks, type StoredSegment } from '../segment/index.js';
import type { SegmentHeader } from '../segment/segment-types.js';
import type { SegmentHeaderInput } from '../segment/index.js';

/** Segment bodies larger than this (only a single huge transaction makes one) are spooled streaming. */
const STREAM_BODIES_OVER = 64 << 20;

/**
 * The local, durable queue between capture and the shippers. Its layout is a replica's layout
 * (same keys, same objects), so one catalog type describes both. An entry stays until
 * every replica is done with it; capture only lets SQLite checkpoint frames already in here.
 */
export class Spool {
  /** A directory on a local disk: snapshots are read back in reused buffers (readChunks). */
  readonly store: LocalStore;
  private segments = new Map<string, SegmentEntry[]>();
  private snapshots = new Map<string, SnapshotEntry[]>();
  private bytes = 0;

  /** Bodies over this many bytes are compressed into the spool file as they go (see addSegment). */
  private readonly streamBodiesOver: number;

  constructor(store: LocalStore, opts: { streamBodiesOver?: number } = {}) {
    this.store = store;
    this.streamBodiesOver = opts.streamBodiesOver ?? STREAM_BODIES_OVER;
  }

  /** Rebuild the in-memory index from disk (at startup). */
  async load(): Promise<void> {
    // Empty files are not screened out here: a bad spool entry must fail when read, not vanish.
    const catalog = buildCatalog(await this.store.list('generations/'), { screenSizes: false });
    this.segments.clear();
    this.snapshots.clear();
    this.bytes = 0;
    for (const g of catalog.generations) {
      this.segments.set(g.id, [...g.segments]);
      this.snapshots.set(g.id, [...g.snapshots]);
      this.bytes += g.bytes;
    }
  }

  /**
   * Durably add a segment, compressed once here for every replica: joinable, so shippers merge
   * spooled segments into one upload without decompressing or compressing them again. With
   * compress: false it is stored raw, for when time matters more than CPU (under the write lock
   * of a WAL reset); the shipper compresses it when it merges it. `body` is not kept: once this
   * settles the caller may overwrite it (capture builds the next body in the same buffer).
   */
  async addSegment(h: Omit<SegmentHeaderInput, 'compression'>, body: Uint8Array, opts?: { compress?: boolean }): Promise<SegmentEntry> {
    const compression = opts?.compress === false ? 'none' : 'zstd';
    const key = segmentKey(h.generation, h.firstTxid, h.lastTxid, h.firstTime, h.lastTime, h.catchUpFrom !== undefined);
    let size: number;
    if (compression === 'zstd' && body.length > this.streamBodiesOver) {
      // One huge transaction: its compressed copy would cost its size once more (309 MB for a
      // 300 MB incompressible one), so it goes to the file frame by frame from one buffer.
      size = await this.putStreamed(key, encodeSegmentChunks(h, body));
    } else {
      const bytes = await encodeSegment({ ...h, compression }, body, { joinable: true });
      await this.store.put(key, bytes);
      size = bytes.length;
    }
    const entry: SegmentEntry = { key, size, ...pick(h), ...(h.catchUpFrom !== undefined && { catchUp: true as const }) };
    const list = this.segments.get(h.generation) ?? [];
    list.push(entry);
    list.sort((a, b) => a.firstTxid - b.firstTxid);
    this.segments.set(h.generation, list);
    this.bytes += size;
    return entry;
  }

  /**
   * Durably add a snapshot streamed from `body` (its chunks may be lent, see PutBody). `check` runs
   * once the file is complete and before any shipper can see it; when it throws, the file is
   * removed and the error passes on (a snapshot read while the database was replaced under it).
   */
  async addSnapshot(generation: string, txid: number, commitTime: number, body: AsyncIterable<Uint8Array>, check?: () => void): Promise<SnapshotEntry> {
    const key = snapshotKey(generation, txid, commitTime);
    const entry: SnapshotEntry = { key, size: await this.putStreamed(key, body), generation, txid, commitTime };
    try {
      check?.();
    } catch (err) {
      await this.store.delete([key]);
      throw err;
    }
    const list = this.snapshots.get(generation) ?? [];
    list.push(entry);
    list.sort((a, b) => a.txid - b.txid);
    this.snapshots.set(generation, list);
    this.bytes += entry.size;
    return entry;
  }

  /** Durably store a streamed body (chunks may be lent); returns its size, counted on the way. */
  private async putStreamed(key: string, body: AsyncIterable<Uint8Array>): Promise<number> {
    let size = 0;
    async function* counted(): AsyncGenerator<Uint8Array> {
      for await (const c of body) {
        size += c.length;
        yield c;
      }
    }
    await this.store.put(key, counted());
    return size;
  }

  generations(): string[] {
    const ids = new Set([...this.segments.keys(), ...this.snapshots.keys()]);
    return [...ids].sort();
  }

  segmentsOf(generation: string): readonly SegmentEntry[] {
    return this.segments.get(generation) ?? [];
  }

  snapshotsOf(generation: string): readonly SnapshotEntry[] {
    return this.snapshots.get(generation) ?? [];
  }

  /** Highest txid in the spool, any generation (0 when empty). */
  maxTxid(): number {
    let max = 0;
    for (const l of this.segments.values()) for (const s of l) max = Math.max(max, s.lastTxid);
    for (const l of this.snapshots.values()) for (const s of l) max = Math.max(max, s.txid);
    return max;
  }

  totalBytes(): number {
    return this.bytes;
  }

  /** Read and verify (checksum and header) a spooled segment, leaving its body compressed. */
  async readStored(entry: SegmentEntry): Promise<StoredSegment> {
    return readStoredSegment(await this.store.get(entry.key), `spool ${entry.key}`);
  }

  /** A spooled segment's header alone (no checksum: streamStored checks that). */
  async readSegmentHeader(entry: SegmentEntry): Promise<SegmentHeader> {
    return readSegmentHeader(await this.store.get(entry.key, { range: { start: 0, end: 4095 } }), `spool ${entry.key}`);
  }

  /** A spooled segment as it is stored, as lent chunks, its checksum verified before the last one. */
  streamStored(entry: SegmentEntry): AsyncGenerator<Uint8Array> {
    return verifiedStoredChunks(this.store.readChunks(entry.key), entry.size, `spool ${entry.key}`);
  }

  /** A spooled snapshot's bytes as lent chunks (two reused buffers), for a put() body. */
  readSnapshot(entry: SnapshotEntry): AsyncGenerator<Uint8Array> {
    return this.store.readChunks(entry.key);
  }

  /** Remove entries every replica is done with. */
  async remove(entries: readonly (SegmentEntry | SnapshotEntry)[]): Promise<void> {
    if (entries.length === 0) return;
    await this.store.delete(entries.map((e) => e.key));
    const gone = new Set(entries.map((e) => e.key));
    for (const [gen, list] of this.segments) {
      const kept = list.filter((e) => !gone.has(e.key));
      if (kept.length) this.segments.set(gen, kept);
      else this.segments.delete(gen);
    }
    for (const [gen, list] of this.snapshots) {
      const kept = list.filter((e) => !gone.has(e.key));
      if (kept.length) this.snapshots.set(gen, kept);
      else this.snapshots.delete(gen);
    }
    for (const e of entries) this.bytes -= e.size;
  }
}

function pick(h: Omit<SegmentHeaderInput, 'compression'>): Omit<SegmentEntry, 'key' | 'size'> {
  return { generation: h.generation, firstTxid: h.firstTxid, lastTxid: h.lastTxid, firstTime: h.firstTime, lastTime: h.lastTime };
}
