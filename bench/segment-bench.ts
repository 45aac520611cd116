import { performance } from 'node:perf_hooks';
import { Readable } from 'node:stream';
import type { BenchRow } from './bench-row.js';
import { SegmentBodyBuilder } from '../src/segment/segment-builder.js';
import { decodeSegment, encodeSegment, iterateTransactions } from '../src/segment/index.js';
import { readSnapshot, snapshotChunks } from '../src/segment/index.js';
import { checksum64 } from '../src/segment/framing.js';
import type { Compression } from '../src/segment/segment-types.js';
import { xorshift32 as rng } from '../test/fixtures/rng.js';

const PAGE_SIZE = 4096;
const TOTAL_PAGES = 16_384; // 64 MiB of pages
const PAGES_PER_TX = 8;
const SEGMENTS = 16; // 4 MiB bodies: a busy sync interval's worth
const RUNS = 3;
/** What pitr writes (zstd), what it wrote before segment format 2 (deflate, kept as a reference in the same run), and raw. */
const CODECS: Compression[] = ['zstd', 'deflate', 'none'];
const LABELS: Record<Compression, string> = { zstd: 'zstd level 1', deflate: 'deflate level 1', none: 'none' };
const ENCODE_HOW: Record<Compression, string> = {
  zstd: 'zstd level 1 as one frame, synchronous on the JS thread, ',
  deflate: 'raw deflate level 1 in 1 MiB slices compressed concurrently on the libuv pool (2 cores here) and joined into one stream, ',
  none: '',
};
const DECODE_HOW: Record<Compression, string> = { zstd: 'zstd decompression into a buffer of the header\'s body length, ', deflate: 'async zlib inflateRaw, ', none: '' };
const GEN = '0123456789abcdef';
const T0 = 1_763_800_000_000;

const WORDS = (
  'alpha bravo charlie delta echo foxtrot golf hotel india juliet kilo lima mike november oscar papa ' +
  'quebec romeo sierra tango uniform victor whiskey xray yankee zulu active pending shipped paid ' +
  'refunded berlin paris tokyo lagos lima austin oslo order invoice customer widget gadget'
).split(' ');

/**
 * A table-leaf-like page: an 8-byte b-tree header and cell pointer array at the front, zeroed free
 * space in the middle, and records packed at the end (a big-endian row id, then text such as
 * "id=..;email=user123@example.com;status=paid;city=oslo;amount=1234.56;ts=1763800000123"), filling
 * about half of the page.
 */
function makePage(pgno: number): Uint8Array {
  const page = new Uint8Array(PAGE_SIZE);
  const next = rng(pgno * 2654435761);
  const enc = new TextEncoder();
  page[0] = 0x0d;
  let end = PAGE_SIZE;
  let cells = 0;
  while (end > PAGE_SIZE / 2 + 128) {
    const rowid = pgno * 64 + cells;
    const text =
      `id=${rowid};email=user${next() % 100000}@example.com;status=${WORDS[next() % WORDS.length]};` +
      `city=${WORDS[next() % WORDS.length]};amount=${(next() % 1_000_000) / 100};ts=${T0 + (next() % 86_400_000)};` +
      `note=${WORDS[next() % WORDS.length]} ${WORDS[next() % WORDS.length]} ${WORDS[next() % WORDS.length]}`;
    const bytes = enc.encode(text);
    const len = 6 + bytes.length;
    end -= len;
    const v = new DataView(page.buffer, end, len);
    v.setUint16(0, bytes.length);
    v.setUint32(2, rowid);
    page.set(bytes, end + 6);
    new DataView(page.buffer).setUint16(8 + 2 * cells, end);
    cells++;
  }
  new DataView(page.buffer).setUint16(3, cells);
  new DataView(page.buffer).setUint16(5, end);
  return page;
}

function mbps(bytes: number, ms: number): number {
  return Math.round((bytes / 1e6 / (ms / 1000)) * 10) / 10;
}

/** Best of RUNS timings, after one warm-up run. */
async function best(fn: () => Promise<void> | void): Promise<number> {
  await fn();
  let min = Infinity;
  for (let i = 0; i < RUNS; i++) {
    const t = performance.now();
    await fn();
    min = Math.min(min, performance.now() - t);
  }
  return min;
}

const DATA_HOW =
  `${TOTAL_PAGES} pages of ${PAGE_SIZE} B (64 MiB) shaped like SQLite table leaves: about half ` +
  'structured text/int records (row ids, emails, words, amounts, timestamps from a seeded PRNG), ' +
  `half zeroed free space; ${PAGES_PER_TX} pages per transaction, cut into ${SEGMENTS} segments of 4 MiB`;

/** Segment and snapshot codec throughput over ~64 MiB of SQLite-like pages. MB = 10^6 bytes. */
export async function benchSegment(): Promise<BenchRow[]> {
  const rows: BenchRow[] = [];
  const pages: Uint8Array[] = [];
  for (let p = 1; p <= TOTAL_PAGES; p++) pages.push(makePage(p));
  const pageBytes = TOTAL_PAGES * PAGE_SIZE;

  // Building: what capture pays per WAL frame.
  const pagesPerSegment = TOTAL_PAGES / SEGMENTS;
  let bodies: Uint8Array[] = [];
  const build = (): void => {
    bodies = [];
    let txid = 1;
    for (let s = 0; s < SEGMENTS; s++) {
      const b = new SegmentBodyBuilder(PAGE_SIZE);
      for (let i = 0; i < pagesPerSegment; i += PAGES_PER_TX) {
        for (let j = 0; j < PAGES_PER_TX; j++) {
          const idx = s * pagesPerSegment + i + j;
          b.page(idx + 1, pages[idx]!);
        }
        b.commit(TOTAL_PAGES, txid, T0 + txid);
        txid++;
      }
      bodies.push(b.finish());
    }
  };
  const buildMs = await best(build);
  const bodyBytes = bodies.reduce((n, b) => n + b.length, 0);
  rows.push({
    name: 'segment build (SegmentBodyBuilder)',
    value: mbps(bodyBytes, buildMs),
    unit: 'MB/s',
    how: `page() per page + commit() per transaction into a fresh builder per segment; ${DATA_HOW}; best of ${RUNS}`,
  });

  // Ceiling: copying the same bytes once.
  const target = new Uint8Array(bodyBytes);
  const copyMs = await best(() => {
    let at = 0;
    for (const b of bodies) {
      target.set(b, at);
      at += b.length;
    }
  });
  rows.push({
    name: 'memory copy (ceiling)',
    value: mbps(bodyBytes, copyMs),
    unit: 'MB/s',
    how: `Uint8Array.set of the same ${SEGMENTS} bodies into one preallocated buffer; best of ${RUNS}`,
  });

  const hashMs = await best(async () => {
    for (const b of bodies) await checksum64(b);
  });
  rows.push({
    name: 'xxhash64 checksum',
    value: mbps(bodyBytes, hashMs),
    unit: 'MB/s',
    how: `xxhash-wasm over the same bodies in 1 MiB slices (as the codecs do); best of ${RUNS}`,
  });

  for (const compression of CODECS) {
    const label = LABELS[compression];
    let encoded: Uint8Array[] = [];
    let txid = 1;
    const headers = bodies.map((b) => {
      const n = b.length / (PAGES_PER_TX * (PAGE_SIZE + 4) + 24);
      const h = { generation: GEN, pageSize: PAGE_SIZE, firstTxid: txid, lastTxid: txid + n - 1, firstTime: T0 + txid, lastTime: T0 + txid + n - 1, compression };
      txid += n;
      return h;
    });
    const encMs = await best(async () => {
      encoded = [];
      for (let i = 0; i < bodies.length; i++) encoded.push(await encodeSegment(headers[i]!, bodies[i]!, { level: 1 }));
    });
    rows.push({
      name: `segment encode, ${label}`,
      value: mbps(bodyBytes, encMs),
      unit: 'MB/s',
      how: `encodeSegment (validate body, ${ENCODE_HOW[compression]}frame, xxhash64 trailer), uncompressed body bytes per second, one segment at a time; ${DATA_HOW}; best of ${RUNS}`,
    });
    const decMs = await best(async () => {
      let seen = 0;
      for (const e of encoded) {
        const { header, body } = await decodeSegment(e);
        for (const tx of iterateTransactions(body, header.pageSize)) seen += tx.pages.length;
      }
      if (seen !== TOTAL_PAGES) throw new Error(`decoded ${seen} pages, expected ${TOTAL_PAGES}`);
    });
    rows.push({
      name: `segment decode, ${label}`,
      value: mbps(bodyBytes, decMs),
      unit: 'MB/s',
      how: `decodeSegment (verify xxhash64 first, ${DECODE_HOW[compression]}check header against commit records) then iterateTransactions over every page; uncompressed body bytes per second; best of ${RUNS}`,
    });
    if (compression !== 'none') {
      const stored = encoded.reduce((n, e) => n + e.length, 0);
      rows.push({
        name: `segment compression ratio, ${label}`,
        value: Math.round((bodyBytes / stored) * 100) / 100,
        unit: 'x',
        how: `uncompressed body bytes / stored object bytes (header and trailer included) over the ${SEGMENTS} segments; ${DATA_HOW}`,
      });
    }
  }

  // Snapshots: the same pages as one 64 MiB database image, streamed through memory.
  for (const compression of CODECS) {
    const label = LABELS[compression];
    const h = { generation: GEN, pageSize: PAGE_SIZE, txid: 1, commitTime: T0, dbSizePages: TOTAL_PAGES, compression };
    // What the agent does: lent chunks, each copied out before the next is asked for (its spool
    // write copies into the page cache); here into one buffer, keeping the chunk boundaries.
    const image = Buffer.allocUnsafe(2 * pageBytes + (1 << 20));
    let chunks: Buffer[] = [];
    const wMs = await best(async () => {
      chunks = [];
      let at = 0;
      for await (const chunk of snapshotChunks(h, (pgno) => pages[pgno - 1]!, { level: 1 })) {
        image.set(chunk, at);
        chunks.push(image.subarray(at, at + chunk.length));
        at += chunk.length;
      }
    });
    rows.push({
      name: `snapshot stream write, ${label}`,
      value: mbps(pageBytes, wMs),
      unit: 'MB/s',
      how: `snapshotChunks of ${TOTAL_PAGES} x ${PAGE_SIZE} B pages (the same SQLite-like pages), each chunk copied into one preallocated buffer as the agent's spool write copies it into the page cache; database bytes per second; best of ${RUNS}`,
    });
    const rMs = await best(async () => {
      let n = 0;
      await readSnapshot(Readable.from(chunks), (_first, pages) => void (n += pages.length / PAGE_SIZE));
      if (n !== TOTAL_PAGES) throw new Error('snapshot page count');
    });
    rows.push({
      name: `snapshot stream read, ${label}`,
      value: mbps(pageBytes, rMs),
      unit: 'MB/s',
      how: `readSnapshot of that object from an in-memory Readable, onPages only counting, checksum verified; database bytes per second; best of ${RUNS}`,
    });
  }
  return rows;
}
