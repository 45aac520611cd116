import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PageWriter } from '../../src/restore/page-writer.js';
import type { TxRecord } from '../../src/segment/segment-types.js';
import { xorshift32 as rng } from '../fixtures/rng.js';

const PAGE = 512;

/** Transactions that grow, rewrite, shrink (as VACUUM or auto-vacuum do) and regrow a database. */
function workload(seed: number, count: number, startPages: number): TxRecord[] {
  const next = rng(seed);
  const txs: TxRecord[] = [];
  let size = startPages;
  for (let t = 0; t < count; t++) {
    const roll = next() % 10;
    if (roll === 0) size = Math.max(1, size - 1 - (next() % 12)); // shrink
    else if (roll < 4) size += 1 + (next() % 6); // grow
    const pages: { pgno: number; data: Uint8Array }[] = [];
    const n = 1 + (next() % 8);
    for (let i = 0; i < n; i++) {
      // Mostly within the new size; now and then a frame past it, which must be ignored.
      const pgno = 1 + (next() % (size + (next() % 4 === 0 ? 3 : 0)));
      pages.push({ pgno, data: new Uint8Array(PAGE).fill((t * 7 + i) % 251 || 1) });
    }
    txs.push({ txid: t + 2, commitTime: t, dbSizePages: size, pages });
  }
  return txs;
}

/** The reference: every page written in commit order, the file cut at every shrink. */
function naive(snapshot: Buffer, txs: TxRecord[]): Buffer {
  let file = Buffer.from(snapshot);
  let size = snapshot.length / PAGE;
  for (const tx of txs) {
    for (const p of tx.pages) {
      if (p.pgno > tx.dbSizePages) continue;
      const end = p.pgno * PAGE;
      if (file.length < end) file = Buffer.concat([file, Buffer.alloc(end - file.length)]);
      file.set(p.data, (p.pgno - 1) * PAGE);
    }
    if (tx.dbSizePages < size) file = file.subarray(0, tx.dbSizePages * PAGE);
    size = tx.dbSizePages;
  }
  if (file.length < size * PAGE) file = Buffer.concat([file, Buffer.alloc(size * PAGE - file.length)]);
  return file.subarray(0, size * PAGE);
}

async function viaWriter(dir: string, snapshot: Buffer, txs: TxRecord[], budget: number): Promise<Buffer> {
  const path = join(dir, `out-${budget}.db`);
  writeFileSync(path, snapshot);
  const fh = await open(path, 'r+');
  let retained = 0;
  let released = 0;
  try {
    // Each transaction's pages live in a body of their own, as in a decoded segment. A released
    // body is scribbled over at once, as restore reuses it for the next segment: a release that
    // came before the pages written from it landed would show up in the file.
    const w = new PageWriter(fh, PAGE, snapshot.length / PAGE, budget, (body) => {
      released++;
      body.fill(0xee);
    });
    for (const tx of txs) {
      const body = new Uint8Array(Math.max(1, tx.pages.length) * PAGE);
      const pages = tx.pages.map((p, i) => {
        body.set(p.data, i * PAGE);
        return { pgno: p.pgno, data: body.subarray(i * PAGE, (i + 1) * PAGE) };
      });
      await w.retain(body);
      retained++;
      w.apply({ ...tx, pages });
    }
    await w.finish();
    assert.equal(w.sizePages, txs.at(-1)?.dbSizePages ?? snapshot.length / PAGE);
    assert.equal(released, retained, 'every body comes back once its flush has landed');
  } finally {
    await fh.close();
  }
  return readFileSync(path);
}

describe('PageWriter', () => {
  it('leaves exactly the bytes of page-by-page application, whatever the flush budget', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'pitr-page-writer-'));
    try {
      for (const seed of [1, 2, 3, 42, 1234]) {
        const snapshot = Buffer.alloc(20 * PAGE);
        for (let p = 0; p < 20; p++) snapshot.fill(200 + (p % 50), p * PAGE, (p + 1) * PAGE);
        const txs = workload(seed, 400, 20);
        const want = naive(snapshot, txs);
        // From a flush after every transaction to a single flush at the end.
        for (const budget of [1, 4 * PAGE, 64 * PAGE, 1 << 30]) {
          const got = await viaWriter(dir, snapshot, txs, budget);
          assert.ok(got.equals(want), `seed ${seed}, budget ${budget}: file differs from page-by-page application`);
        }
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('zero-fills pages cut off by a shrink and not written again after the database regrows', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'pitr-page-writer-'));
    try {
      const snapshot = Buffer.alloc(10 * PAGE, 0xaa);
      const page = (v: number): Uint8Array => new Uint8Array(PAGE).fill(v);
      const txs: TxRecord[] = [
        { txid: 2, commitTime: 0, dbSizePages: 12, pages: [{ pgno: 12, data: page(1) }] },
        { txid: 3, commitTime: 0, dbSizePages: 4, pages: [] },
        { txid: 4, commitTime: 0, dbSizePages: 12, pages: [{ pgno: 7, data: page(2) }] },
      ];
      const got = await viaWriter(dir, snapshot, txs, 1 << 30);
      assert.equal(got.length, 12 * PAGE);
      assert.ok(got.subarray(0, 4 * PAGE).every((b) => b === 0xaa), 'pages before the cut keep the snapshot');
      assert.ok(got.subarray(4 * PAGE, 6 * PAGE).every((b) => b === 0), 'cut pages read as zeros');
      assert.ok(got.subarray(6 * PAGE, 7 * PAGE).every((b) => b === 2), 'the rewritten page is there');
      assert.ok(got.subarray(7 * PAGE).every((b) => b === 0), 'page 12 was cut by txid 3 and never rewritten');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
