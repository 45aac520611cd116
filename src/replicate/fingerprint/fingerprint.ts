import { isDiskFull } from '../../errors.js';
import { PageHashes, pageHasher, zeroPageHash, type PageHasher } from './page-hashes.js';
import {
  ENTRY_BYTES,
  JOURNAL_HEADER,
  appendRecord,
  fingerprintSupported,
  readBase,
  readJournal,
  removeBase,
  resetJournal,
  truncateJournal,
  writeBase,
} from './fingerprint-files.js';

/** The journal is folded into a new base once it is this large and larger than the base itself. */
const COMPACT_MIN_BYTES = 1 << 20;

/**
 * What the replica holds, page by page: one hash per page of the database as of the last captured
 * txid, kept in memory (8 bytes per page) and durably in the state directory as a base plus a
 * journal of the spool entries since (fingerprint-files.ts). At a start where the WAL cannot be
 * continued, comparing the database with it tells exactly which pages changed while the agent was
 * down (catch-up.ts).
 *
 * Capture feeds it every page it spools (page/commit), then, per spool entry: record() before the
 * entry is written, applied() once it is durable, or discard() when it failed. Until a base exists
 * (a new generation before its first snapshot) it records nothing.
 */
export class Fingerprint {
  private pending = Buffer.alloc(64 * ENTRY_BYTES);
  private pendingLength = 0;
  private lastAppend: { before: number; lastTxid: number; lastTime: number } | undefined;
  private lostReason: string | undefined;
  /** Journal bytes at the last failed fold: the next try waits for that much more. */
  private compactDeferred = 0;

  private constructor(
    private readonly stateDir: string,
    readonly generation: string,
    readonly pageSize: number,
    private readonly hash: PageHasher,
    private hashes: PageHashes | undefined,
    private at: { txid: number; lastTime: number },
    private journalBytes: number,
  ) {}

  /** A fingerprint for a new generation: nothing until setBase() (its first snapshot). Resets the files. */
  static async start(stateDir: string, generation: string, pageSize: number): Promise<Fingerprint> {
    const hash = await pageHasher();
    await removeBase(stateDir);
    await resetJournal(stateDir, generation, pageSize);
    return new Fingerprint(stateDir, generation, pageSize, hash, undefined, { txid: 0, lastTime: 0 }, JOURNAL_HEADER);
  }

  /**
   * The saved fingerprint of `generation` as of exactly txid `upTo`, or why it cannot be had. The
   * journal may hold records past `upTo` (appended before a spool write the agent did not live to
   * finish); they are ignored. A journal that stops short of `upTo` (a power cut) is unusable.
   */
  static async load(stateDir: string, want: { generation: string; pageSize: number; upTo: number }): Promise<Fingerprint | string> {
    if (!fingerprintSupported) return 'fingerprints are not supported on big-endian machines';
    const base = await readBase(stateDir);
    if (base === null) return 'no fingerprint is saved (the state directory predates it, or was emptied)';
    if (typeof base === 'string') return `the saved fingerprint is damaged: ${base}`;
    if (base.generation !== want.generation) return `the saved fingerprint belongs to generation ${base.generation}, not ${want.generation}`;
    if (base.pageSize !== want.pageSize) return `the saved fingerprint is for ${base.pageSize}-byte pages`;
    if (base.txid > want.upTo) return `the saved fingerprint (txid ${base.txid}) is ahead of everything saved (txid ${want.upTo})`;
    const hash = await pageHasher();
    const hashes = new PageHashes(want.pageSize, zeroPageHash(hash, want.pageSize), { hashes: base.hashes, count: base.hashes.length });
    const at = { txid: base.txid, lastTime: base.lastTime };
    const journal = await readJournal(stateDir, want.generation, want.pageSize);
    for (const r of journal.records) {
      if (at.txid === want.upTo) break;
      if (r.lastTxid <= at.txid) continue; // folded into the base already
      if (r.firstTxid !== at.txid + 1 || r.lastTxid > want.upTo) break;
      applyEntries(hashes, r.entries, r.entries.length);
      at.txid = r.lastTxid;
      at.lastTime = r.lastTime;
    }
    if (at.txid !== want.upTo) {
      return `the saved fingerprint ends at txid ${at.txid}, before txid ${want.upTo} (its journal was cut short, as by a power cut)`;
    }
    const fp = new Fingerprint(stateDir, want.generation, want.pageSize, hash, hashes, at, journal.bytes);
    // Anything past upTo, or torn, is dropped now, so that the next record follows upTo directly.
    await fp.setBase(at.txid, at.lastTime, hashes);
    return fp;
  }

  /** True once the fingerprint describes a txid (after a load, or the first snapshot's setBase). */
  get ready(): boolean {
    return this.hashes !== undefined;
  }

  /** The txid it describes, and that txid's commit time. */
  get txid(): number {
    return this.at.txid;
  }

  get lastTime(): number {
    return this.at.lastTime;
  }

  /** The page hashes (undefined before the first base). Read-only for callers. */
  get pages(): PageHashes | undefined {
    return this.hashes;
  }

  hashPage(page: Uint8Array): bigint {
    return this.hash(page);
  }

  /** A page the transaction being spooled wrote. */
  page(pgno: number, data: Uint8Array): void {
    if (!this.hashes) return;
    this.entry(pgno, this.hash(data));
  }

  /** A page the transaction being spooled wrote, already hashed (a catch-up step). */
  pageHash(pgno: number, hash: bigint): void {
    if (!this.hashes) return;
    this.entry(pgno, hash);
  }

  /** The transaction being spooled committed at `dbSizePages` pages. */
  commit(dbSizePages: number): void {
    if (!this.hashes) return;
    this.entry(0, BigInt(dbSizePages));
  }

  /**
   * Journal the transactions fed since the last record, as txids first..last; before their spool
   * entry is written. A full disk throws (the spool entry could not be written either, and capture
   * retries both). Any other failure (the journal deleted or unwritable) gives up the fingerprint
   * for this generation rather than stop capture: the next start then begins a new generation.
   */
  async record(firstTxid: number, lastTxid: number, lastTime: number): Promise<void> {
    if (!this.hashes) return;
    const entries = this.pending.subarray(0, this.pendingLength);
    try {
      const { before, after } = await appendRecord(this.stateDir, { firstTxid, lastTxid, lastTime, entries });
      this.lastAppend = { before, lastTxid, lastTime };
      this.journalBytes = after;
    } catch (err) {
      if (isDiskFull(err)) throw err;
      this.giveUp(err);
    }
  }

  /** The recorded entry is durable in the spool: the fingerprint now describes its last txid. */
  applied(): void {
    if (!this.hashes || !this.lastAppend) {
      this.pendingLength = 0;
      return;
    }
    applyEntries(this.hashes, this.pending, this.pendingLength);
    this.at = { txid: this.lastAppend.lastTxid, lastTime: this.lastAppend.lastTime };
    this.pendingLength = 0;
    this.lastAppend = undefined;
  }

  /** The recorded entry was not written: take its record back (a restart would ignore it anyway). */
  discard(): void {
    this.pendingLength = 0;
    if (!this.lastAppend) return;
    const before = this.lastAppend.before;
    this.lastAppend = undefined;
    try {
      truncateJournal(this.stateDir, before);
      this.journalBytes = before;
    } catch (err) {
      // A record left past the spool is ignored at load; one left before a later record is not.
      this.giveUp(err);
    }
  }

  /** Why the fingerprint was given up while running (logged once by the caller), or undefined. */
  get lost(): string | undefined {
    return this.lostReason;
  }

  /** Make `hashes` the base as of `txid` (a generation's first snapshot, or a fold) and empty the journal. */
  async setBase(txid: number, lastTime: number, hashes: PageHashes): Promise<void> {
    await writeBase(this.stateDir, { generation: this.generation, pageSize: this.pageSize, txid, lastTime, hashes: hashes.view() });
    await resetJournal(this.stateDir, this.generation, this.pageSize);
    this.hashes = hashes;
    this.at = { txid, lastTime };
    this.journalBytes = JOURNAL_HEADER;
  }

  /**
   * Collects a new base from every page of an image (a new generation's first snapshot, or a read
   * of the database): onPage for pages 1..n in any order, then finish() makes it the base.
   */
  newBase(): { onPage: (pgno: number, data: Uint8Array) => void; finish: (txid: number, lastTime: number, dbSizePages: number) => Promise<void> } {
    const hashes = new PageHashes(this.pageSize, zeroPageHash(this.hash, this.pageSize));
    return {
      onPage: (pgno, data) => hashes.set(pgno, this.hash(data)),
      finish: async (txid, lastTime, dbSizePages) => {
        hashes.commit(dbSizePages);
        await this.setBase(txid, lastTime, hashes);
      },
    };
  }

  /**
   * Fold the journal into a new base when it has grown past the base's size (bounded disk, fast
   * loads). A failure (a full disk) leaves base and journal as they were, both still valid, and is
   * tried again after the journal has grown by as much again.
   */
  async compactIfDue(): Promise<void> {
    if (!this.hashes || this.pendingLength > 0) return;
    const due = Math.max(COMPACT_MIN_BYTES, this.hashes.count * 8);
    if (this.journalBytes < due + this.compactDeferred) return;
    try {
      await this.setBase(this.at.txid, this.at.lastTime, this.hashes);
      this.compactDeferred = 0;
    } catch {
      this.compactDeferred = this.journalBytes;
    }
  }

  private giveUp(err: unknown): void {
    this.hashes = undefined;
    this.lastAppend = undefined;
    this.pendingLength = 0;
    this.lostReason = `its journal could not be written (${(err as Error).message})`;
  }

  private entry(pgno: number, value: bigint): void {
    if (this.pendingLength + ENTRY_BYTES > this.pending.length) {
      const grown = Buffer.alloc(this.pending.length * 2);
      this.pending.copy(grown, 0, 0, this.pendingLength);
      this.pending = grown;
    }
    this.pending.writeUInt32LE(pgno, this.pendingLength);
    this.pending.writeBigUInt64LE(value, this.pendingLength + 4);
    this.pendingLength += ENTRY_BYTES;
  }
}

function applyEntries(hashes: PageHashes, entries: Buffer, length: number): void {
  for (let at = 0; at < length; at += ENTRY_BYTES) {
    const pgno = entries.readUInt32LE(at);
    const value = entries.readBigUInt64LE(at + 4);
    if (pgno === 0) hashes.commit(Number(value));
    else hashes.set(pgno, value);
  }
}
