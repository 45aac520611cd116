import { setImmediate as yieldToEventLoop } from 'node:timers/promises';
import { SegmentBodyBuilder } from '../../segment/segment-builder.js';
import { PageImage, type PageImageView } from '../page-image.js';
import type { Spool } from '../spool.js';
import type { PageHashes } from './page-hashes.js';
import type { Fingerprint } from './fingerprint.js';

/**
 * Largest catch-up step (body bytes before compression). A step is one transaction, built in
 * memory whole like any spooled transaction; past this a new generation (whose snapshot streams)
 * costs the agent less memory than the step would.
 */
export const CATCH_UP_MAX_BYTES = 256 << 20;

/** Pages hashed between two turns of the event loop: the comparison must not stall the other databases. */
const PAGES_PER_TURN = 256;

export type CatchUpResult =
  /** The database is exactly what the fingerprint describes: nothing to ship. */
  | { kind: 'same'; pages: number; readMs: number }
  /** The difference, spooled as one catch-up step with txid fingerprint.txid + 1. */
  | { kind: 'step'; txid: number; time: number; from: number; changed: number; pages: number; bytes: number; readMs: number }
  /** More changed than a step may hold: the caller starts a new generation. */
  | { kind: 'too-large'; changedAtLeast: number; pages: number; readMs: number };

/**
 * Compare the database as of `view` (read through PageImage, so the caller holds the read
 * transaction that makes it consistent) with `fp`, and spool what differs as ONE catch-up step in
 * fp's generation: the changed pages and the new size, txid fp.txid + 1, commit time now, marked
 * with the commit time of fp.txid (where the downtime it covers starts). Journals it in `fp` first
 * (see Fingerprint), so that on success `fp` describes the new txid.
 *
 * Cost: one read of the database, hashing every page (about 3.5 GB/s of hashing on one core).
 */
export async function catchUp(args: { dbPath: string; view: PageImageView; fp: Fingerprint; spool: Spool; generation: string; maxBytes?: number }): Promise<CatchUpResult> {
  const { view, fp } = args;
  const started = Date.now();
  const old = fp.pages as PageHashes;
  const builder = new SegmentBodyBuilder(view.pageSize);
  let changed = 0;
  let bodyBytes = 0;
  let tooLarge = false;
  const image = await PageImage.open(args.dbPath, view);
  try {
    for (let pgno = 1; pgno <= view.dbSizePages; pgno++) {
      const data = image.page(pgno);
      const h = fp.hashPage(data);
      if (old.get(pgno) !== h) {
        changed++;
        bodyBytes += 4 + data.length;
        if (bodyBytes > (args.maxBytes ?? CATCH_UP_MAX_BYTES)) {
          tooLarge = true;
          break;
        }
        builder.page(pgno, data);
        fp.pageHash(pgno, h);
      }
      if (pgno % PAGES_PER_TURN === 0) await yieldToEventLoop();
    }
  } finally {
    await image.close();
  }
  const readMs = Date.now() - started;
  if (tooLarge) {
    fp.discard();
    return { kind: 'too-large', changedAtLeast: changed, pages: view.dbSizePages, readMs };
  }
  if (changed === 0 && old.count === view.dbSizePages) {
    fp.discard();
    return { kind: 'same', pages: view.dbSizePages, readMs };
  }
  const txid = fp.txid + 1;
  const from = fp.lastTime;
  // The restart time; never before the last commit (a clock stepped back), as for any transaction.
  const time = Math.max(Date.now(), from);
  builder.commit(view.dbSizePages, txid, time);
  fp.commit(view.dbSizePages);
  const body = builder.finish();
  await fp.record(txid, txid, time);
  let bytes: number;
  try {
    const entry = await args.spool.addSegment(
      { generation: args.generation, pageSize: view.pageSize, firstTxid: txid, lastTxid: txid, firstTime: time, lastTime: time, catchUpFrom: from },
      body,
    );
    bytes = entry.size;
  } catch (err) {
    fp.discard();
    throw err;
  }
  fp.applied();
  return { kind: 'step', txid, time, from, changed, pages: view.dbSizePages, bytes, readMs };
}
