import { readDbFileInfo } from '../../db/db-file.js';
import type { SourceDb } from '../../db/source-db.js';
import { filesChanged } from '../../db/file-guard.js';
import { isPitrError } from '../../errors.js';
import type { WalCursor } from '../../wal/wal-cursor.js';
import { newGenerationId } from '../../segment/object-names.js';
import type { Spool } from '../spool.js';
import type { Position } from './position.js';
import { addPass, type PassResult } from './pass-result.js';
import { WalPump, type ChainState } from './wal-pump.js';
import { Checkpointer } from './checkpointer.js';
import { continuityProblem, notePageOneFrames, scanAtStart } from './continuity.js';
import { Fingerprint } from '../fingerprint/fingerprint.js';
import { catchUp, type CatchUpResult } from '../fingerprint/catch-up.js';
import { PageImage } from '../page-image.js';

/** A consistent view for a snapshot: the chain state plus where each page's newest copy is. */
export interface SnapshotView {
  generation: string;
  txid: number;
  commitTime: number;
  dbSizePages: number;
  pageSize: number;
  cursor: WalCursor | null;
  /** pgno -> newest WAL frame holding it, for frames up to the cursor. */
  pageMap: Map<number, number>;
}

import type { CaptureOptions } from './capture-options.js';
export type { CaptureOptions } from './capture-options.js';

/** A pass that finds nothing new this long after the last capture counts as a quiet moment. */
export const QUIET_MS = 250;

/**
 * Capture: turns committed WAL frames into durable spool entries, one txid per commit.
 * Every method must be called under the agent's capture lock (one at a time).
 */
export class Capture {
  private readonly pump: WalPump;
  private readonly checkpointer: Checkpointer;
  private lastCaptureAt = 0;
  private readonly dbPath: string;
  private readonly log: CaptureOptions['log'];
  private fingerprintLostLogged = false;

  private constructor(
    private readonly db: SourceDb,
    spool: Spool,
    opts: CaptureOptions,
    state: ChainState,
    fingerprint: Fingerprint,
  ) {
    this.dbPath = opts.dbPath;
    this.log = opts.log;
    this.pump = new WalPump(db, spool, opts, state, fingerprint);
    this.checkpointer = new Checkpointer(db, this.pump, opts);
  }

  get walPath(): string {
    return this.pump.walPath;
  }

  /** The capture chain: what has been spooled, and where that leaves us in the WAL. */
  get state(): ChainState {
    return this.pump.state;
  }

  /**
   * Open the chain at startup. Continues the saved position when continuity is proven (same
   * file, same WAL incarnation, its frames up to the saved cursor unchanged, nothing newer in the
   * spool or the replicas). When it is not, and the fingerprint of what was captured is usable,
   * compares the database with it and continues the generation, shipping what changed meanwhile as
   * one catch-up step (nothing when nothing changed). Otherwise starts a new generation, whose first
   * snapshot the caller must take (see `newGeneration`) before anything else, feeding its pages to
   * `firstSnapshotPages()`.
   * `distrust`: the files changed under the running agent (FileGuard): the WAL proves nothing.
   */
  static async start(
    db: SourceDb,
    spool: Spool,
    opts: CaptureOptions,
    position: Position | null,
    knownMaxTxid: number,
    distrust?: string,
  ): Promise<{ capture: Capture; newGeneration: boolean; reason: string; catchUp?: CatchUpResult; fingerprintNote?: string }> {
    const walPath = `${opts.dbPath}-wal`;
    const scan = await scanAtStart(db, opts.dbPath, walPath);
    const commits = scan.kind === 'ok' ? scan.commits : [];
    const cursor = scan.kind === 'ok' ? scan.cursor : null;
    // What a checkpoint may have put in the file's header so far: its header now, and every page 1
    // in the WAL up to our read mark (see FileGuard).
    db.guard.noteCurrentHeader();
    await notePageOneFrames(db, walPath, commits);
    const lastCommit = commits[commits.length - 1];
    // Without commits in the WAL the size comes from the file header, read now, under the read
    // transaction: the header read when the database was opened may predate a checkpoint.
    const dbSizePages = lastCommit ? lastCommit.dbSizePages : (await readDbFileInfo(opts.dbPath)).pageCount;
    const pageSize = db.info.pageSize;

    let reason = distrust ?? (await continuityProblem(db, walPath, position, knownMaxTxid, scan));
    const fp: Fingerprint | string = !position
      ? 'no saved position'
      : position.pageSize !== pageSize
        ? 'the page size changed'
        : await Fingerprint.load(opts.stateDir, { generation: position.generation, pageSize, upTo: Math.max(knownMaxTxid, position.lastTxid) });

    if (reason === null && position) {
      const chain = { generation: position.generation, lastTxid: position.lastTxid, lastTime: position.lastTime, cursor: position.cursor, dbSizePages: position.dbSizePages };
      const fingerprint = typeof fp === 'string' ? await Fingerprint.start(opts.stateDir, position.generation, pageSize) : fp;
      const capture = new Capture(db, spool, opts, chain, fingerprint);
      const oldFrames = position.cursor?.frame ?? 0;
      capture.pump.mapCommits(commits.filter((c) => c.lastFrame <= oldFrames));
      // The WAL proves its own frames, not the rest of the file: a file copied over the database
      // in place, its WAL kept, passes every check above. Page 1 is in every other database's
      // header, so one page read catches that (a full comparison follows).
      if (typeof fp !== 'string' && !(await capture.pageOneMatches(fp))) {
        reason = 'page 1 differs from the captured one (the database file was overwritten in place?)';
      } else {
        const fresh = commits.filter((c) => c.firstFrame > oldFrames);
        if (fresh.length > 0 && scan.kind === 'ok') await capture.pump.spoolCommits(fresh, scan.cursor);
        // An existing generation without a fingerprint (saved by an earlier pitr): build it now.
        const fingerprintNote = typeof fp === 'string' ? await capture.buildFingerprint(fp) : undefined;
        return { capture, newGeneration: false, reason: 'continuity proven', ...(fingerprintNote && { fingerprintNote }) };
      }
    }
    reason ??= 'no saved position';
    let why = typeof fp === 'string' ? `${reason}, and ${fp}` : reason;
    if (position && typeof fp !== 'string') {
      const chain = { generation: position.generation, lastTxid: fp.txid, lastTime: fp.lastTime, cursor, dbSizePages };
      const capture = new Capture(db, spool, opts, chain, fp);
      capture.pump.mapCommits(commits);
      const r = await catchUp({ dbPath: opts.dbPath, view: capture.snapshotView(), fp, spool, generation: position.generation });
      if (r.kind !== 'too-large') {
        if (r.kind === 'step') capture.pump.state = { ...capture.pump.state, lastTxid: r.txid, lastTime: r.time };
        await capture.persist();
        return { capture, newGeneration: false, reason, catchUp: r };
      }
      why = `${reason}, and at least ${r.changedAtLeast} of ${r.pages} pages changed, more than one catch-up step may hold`;
    }
    const txid = Math.max(knownMaxTxid, position?.lastTxid ?? 0) + 1;
    const generation = newGenerationId();
    const capture = new Capture(
      db,
      spool,
      opts,
      { generation, lastTxid: txid, lastTime: Math.max(Date.now(), position?.lastTime ?? 0), cursor, dbSizePages },
      await Fingerprint.start(opts.stateDir, generation, pageSize),
    );
    capture.pump.mapCommits(commits);
    return { capture, newGeneration: true, reason: why };
  }

  /** True when page 1 as of the chain's position hashes as the fingerprint says. */
  private async pageOneMatches(fp: Fingerprint): Promise<boolean> {
    const image = await PageImage.open(this.dbPath, this.snapshotView());
    try {
      return fp.pages?.get(1) === fp.hashPage(image.page(1));
    } finally {
      await image.close();
    }
  }

  /**
   * Hash every page as of the chain's position into a new fingerprint base: for a generation
   * continued without a usable one. Returns a note for the log.
   */
  private async buildFingerprint(why: string): Promise<string> {
    const started = Date.now();
    const view = this.snapshotView();
    const base = this.pump.fingerprint.newBase();
    const image = await PageImage.open(this.dbPath, view);
    try {
      for (let pgno = 1; pgno <= view.dbSizePages; pgno++) base.onPage(pgno, image.page(pgno));
    } finally {
      await image.close();
    }
    await base.finish(view.txid, view.commitTime, view.dbSizePages);
    return `${why}; built one from the database (${view.dbSizePages} pages in ${Date.now() - started} ms)`;
  }

  /**
   * For a new generation's first snapshot: feed `onPage` every page of it, then `finish()` once it
   * is spooled, which makes those pages the fingerprint's base.
   */
  firstSnapshotPages(): { onPage: (pgno: number, data: Uint8Array) => void; finish: () => Promise<void> } {
    const base = this.pump.fingerprint.newBase();
    const { lastTxid, lastTime, dbSizePages } = this.pump.state;
    return { onPage: base.onPage, finish: () => base.finish(lastTxid, lastTime, dbSizePages) };
  }

  /**
   * One capture pass: move the read mark, read newly committed frames, spool them durably, and
   * checkpoint when the WAL is long and fully spooled.
   */
  async pass(): Promise<PassResult> {
    let r: PassResult;
    try {
      r = await this.passSteps();
    } catch (err) {
      // The files changed under pitr (see FileGuard): whatever this pass spooled before it noticed
      // is durable and saved; nothing more may be read or checkpointed through these connections.
      if (!isPitrError(err, 'DB_FILES_CHANGED')) throw err;
      return { transactions: 0, bytes: 0, broken: err.message };
    }
    // Quiet is measured from the end of the last pass that captured or reset, not from its start:
    // a long pass, or a reset that held the app's writers (they then sleep in their busy handler),
    // left the next pass seeing no commit for a while, and the TRUNCATE it then took stalled an app
    // that was only waiting for pitr (measured: 200-730 ms, behind a flat-out writer).
    if (r.transactions > 0 || r.checkpoint?.mode === 'RESET') this.lastCaptureAt = Date.now();
    const lost = this.pump.fingerprint.lost;
    if (lost !== undefined && !this.fingerprintLostLogged) {
      this.fingerprintLostLogged = true;
      this.log.warn(`fingerprint given up: ${lost}; capture goes on, but a restart that cannot continue from the WAL will start a new generation`, {
        generation: this.pump.state.generation,
      });
    }
    return r;
  }

  private async passSteps(): Promise<PassResult> {
    const changed = this.db.guard.problem(!this.pump.markAhead);
    if (changed) return { transactions: 0, bytes: 0, broken: changed };
    const total: PassResult = { transactions: 0, bytes: 0 };
    const add = (r: PassResult): boolean => addPass(total, r);
    // Invariant (see SourceDb): every frame up to the held reader's mark is spooled before the
    // reader moves again. So every advanceRead() below is followed by a full catch-up, and a pass
    // that failed before its catch-up finished (the spool's disk full, say) left the mark ahead:
    // catch up first, or this advance could begin a reader that no longer protects those frames.
    if (this.pump.markAhead && !add(await this.pump.catchUp())) return total;
    this.pump.advanceRead();
    if (!add(await this.pump.catchUp())) return total;
    const quiet = total.transactions === 0 && Date.now() - this.lastCaptureAt >= QUIET_MS;
    if (total.transactions > 0) this.lastCaptureAt = Date.now();
    if (quiet) this.pump.spareBody = undefined;
    add(await this.checkpointer.afterCatchUp(quiet));
    return total;
  }

  /**
   * Throws DB_FILES_CHANGED when the files at the database's paths are not what capture holds and
   * has read (FileGuard): for work done outside a pass, such as a snapshot, to check its result.
   */
  assertFiles(): void {
    const problem = this.db.guard.problem(!this.pump.markAhead);
    if (problem) throw filesChanged(problem);
  }

  /** The consistent view a snapshot needs; call under the capture lock and pin the read first. */
  snapshotView(): SnapshotView {
    return {
      generation: this.pump.state.generation,
      txid: this.pump.state.lastTxid,
      commitTime: this.pump.state.lastTime,
      dbSizePages: this.pump.state.dbSizePages,
      pageSize: this.db.info.pageSize,
      cursor: this.pump.state.cursor ? { ...this.pump.state.cursor } : null,
      pageMap: new Map(this.pump.pageMap),
    };
  }

  /** Save the position (after the spool entries it describes are durable). */
  async persist(): Promise<void> {
    await this.pump.persist();
  }
}
