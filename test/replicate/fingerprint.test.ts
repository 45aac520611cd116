import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, statSync, truncateSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Fingerprint } from '../../src/replicate/fingerprint/fingerprint.js';
import { PageHashes, pageHasher, zeroPageHash } from '../../src/replicate/fingerprint/page-hashes.js';
import { BASE_FILE, JOURNAL_FILE } from '../../src/replicate/fingerprint/fingerprint-files.js';

const GEN = '0123456789abcdef';
const PAGE = 1024;

function page(seed: number): Uint8Array {
  const p = new Uint8Array(PAGE);
  for (let i = 0; i < PAGE; i += 4) p[i] = (seed * 31 + i) & 0xff;
  return p;
}

/** A fingerprint with a base of `n` pages (page k = page(k)) at txid 10. */
async function withBase(dir: string, n = 4): Promise<Fingerprint> {
  const fp = await Fingerprint.start(dir, GEN, PAGE);
  const base = fp.newBase();
  for (let k = 1; k <= n; k++) base.onPage(k, page(k));
  await base.finish(10, 1000, n);
  return fp;
}

/** Spool one entry's worth through the fingerprint as capture does: txids first..last. */
async function entry(fp: Fingerprint, first: number, last: number, writes: [number, number][], size: number): Promise<void> {
  for (const [pgno, seed] of writes) fp.page(pgno, page(seed));
  for (let t = first; t <= last; t++) fp.commit(size);
  await fp.record(first, last, 1000 + last);
  fp.applied();
}

function hashesOf(fp: Fingerprint): bigint[] {
  return [...(fp.pages as PageHashes).view()];
}

function loaded(r: Fingerprint | string): Fingerprint {
  if (typeof r === 'string') assert.fail(`expected a fingerprint, got: ${r}`);
  return r;
}

describe('page hashes', () => {
  it('grow with zero pages past a write beyond the end, and truncate at a commit', async () => {
    const hash = await pageHasher();
    const zero = zeroPageHash(hash, PAGE);
    const h = new PageHashes(PAGE, zero);
    h.commit(2);
    assert.deepEqual([...h.view()], [zero, zero]);
    h.set(5, 7n);
    h.commit(6);
    assert.deepEqual([...h.view()], [zero, zero, zero, zero, 7n, zero]);
    h.commit(3);
    h.commit(5);
    // Shrunk and grown again: what was past the cut is gone (a restore truncates, then zero-fills).
    assert.deepEqual([...h.view()], [zero, zero, zero, zero, zero]);
  });
});

describe('fingerprint files', () => {
  it('a new generation has none until its base; then a load gives back exactly what capture built', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'pitr-fp-'));
    const fresh = await Fingerprint.start(dir, GEN, PAGE);
    assert.equal(fresh.ready, false);
    assert.match(String(await Fingerprint.load(dir, { generation: GEN, pageSize: PAGE, upTo: 0 })), /no fingerprint is saved/);
    const fp = await withBase(dir);
    await entry(fp, 11, 11, [[2, 20]], 4);
    await entry(fp, 12, 14, [[6, 60], [1, 10]], 6);
    await entry(fp, 15, 15, [], 3);
    const back = loaded(await Fingerprint.load(dir, { generation: GEN, pageSize: PAGE, upTo: 15 }));
    assert.deepEqual(hashesOf(back), hashesOf(fp));
    assert.equal(back.txid, 15);
    assert.equal(back.lastTime, 1015);
    assert.equal(back.pages?.count, 3);
  });

  it('a record journaled for an entry never written is ignored, and the next one continues after the saved txid', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'pitr-fp-'));
    const fp = await withBase(dir);
    await entry(fp, 11, 12, [[2, 20]], 4);
    const at12 = hashesOf(fp);
    // Killed after the record, before the spool entry: no applied().
    fp.page(3, page(30));
    fp.commit(4);
    await fp.record(13, 13, 2000);
    const back = loaded(await Fingerprint.load(dir, { generation: GEN, pageSize: PAGE, upTo: 12 }));
    assert.deepEqual(hashesOf(back), at12);
    // The next run journals txid 13 again, differently; a later load takes that one.
    await entry(back, 13, 13, [[4, 44]], 4);
    const again = loaded(await Fingerprint.load(dir, { generation: GEN, pageSize: PAGE, upTo: 13 }));
    assert.deepEqual(hashesOf(again), hashesOf(back));
  });

  it('discard() takes a record back', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'pitr-fp-'));
    const fp = await withBase(dir);
    const size = statSync(join(dir, JOURNAL_FILE)).size;
    fp.page(3, page(30));
    fp.commit(4);
    await fp.record(11, 11, 2000);
    assert.ok(statSync(join(dir, JOURNAL_FILE)).size > size);
    fp.discard();
    assert.equal(statSync(join(dir, JOURNAL_FILE)).size, size);
    assert.equal(fp.txid, 10);
  });

  it('a journal cut short (a power cut) is unusable for a txid it no longer reaches', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'pitr-fp-'));
    const fp = await withBase(dir);
    await entry(fp, 11, 11, [[2, 20]], 4);
    await entry(fp, 12, 12, [[3, 30]], 4);
    const path = join(dir, JOURNAL_FILE);
    truncateSync(path, statSync(path).size - 3);
    assert.match(String(await Fingerprint.load(dir, { generation: GEN, pageSize: PAGE, upTo: 12 })), /ends at txid 11, before txid 12/);
    // Up to the last whole record it still serves.
    loaded(await Fingerprint.load(dir, { generation: GEN, pageSize: PAGE, upTo: 11 }));
  });

  it('refuses another generation, another page size, a txid before its base, and a damaged base', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'pitr-fp-'));
    await withBase(dir);
    assert.match(String(await Fingerprint.load(dir, { generation: 'fedcba9876543210', pageSize: PAGE, upTo: 10 })), /belongs to generation/);
    assert.match(String(await Fingerprint.load(dir, { generation: GEN, pageSize: 4096, upTo: 10 })), /1024-byte pages/);
    assert.match(String(await Fingerprint.load(dir, { generation: GEN, pageSize: PAGE, upTo: 9 })), /ahead of everything saved/);
    const path = join(dir, BASE_FILE);
    const bytes = readFileSync(path);
    bytes[60] = (bytes[60] as number) ^ 1;
    writeFileSync(path, bytes);
    assert.match(String(await Fingerprint.load(dir, { generation: GEN, pageSize: PAGE, upTo: 10 })), /damaged: .*checksum/);
  });

  it('folds a long journal into a new base, keeping what it describes', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'pitr-fp-'));
    const fp = await withBase(dir);
    // 1 MiB of journal: 12 bytes an entry.
    let txid = 10;
    for (let i = 0; i < 100; i++) {
      for (let k = 0; k < 900; k++) fp.pageHash(1 + (k % 4), BigInt(i * 1000 + k));
      fp.commit(4);
      txid++;
      await fp.record(txid, txid, 5000 + txid);
      fp.applied();
      await fp.compactIfDue();
    }
    assert.ok(statSync(join(dir, JOURNAL_FILE)).size < 1 << 20, 'the journal was folded');
    const back = loaded(await Fingerprint.load(dir, { generation: GEN, pageSize: PAGE, upTo: txid }));
    assert.deepEqual(hashesOf(back), hashesOf(fp));
    assert.equal(back.lastTime, 5000 + txid);
  });
});
