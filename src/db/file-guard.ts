import { readSync, realpathSync, statSync } from 'node:fs';
import { resolve } from 'node:path';
import { heldFiles } from './held-files.js';
import { PitrError, errnoCode } from '../errors.js';

/** A file as the kernel names it: a path can come to name another one (rename over, rm + create). */
export interface FileId {
  dev: number;
  ino: number;
}

/** The three files SQLite uses for one database in WAL mode. */
type Part = 'database' | '-wal' | '-shm';

const HEADER_BYTES = 100;
/** Most database headers remembered per WAL incarnation; past it the header check rests until the WAL restarts. */
const MAX_KNOWN_HEADERS = 1 << 16;

/**
 * Proof that the files pitr's SQLite connections use are still the files at the database's paths.
 *
 * Why: operators restore a backup by hand (`rm app.db-wal app.db-shm; cp backup.db app.db`, or a
 * rename over app.db) while the agent runs. SQLite keeps using the -wal and -shm it opened, even
 * unlinked, and shares one -shm mapping between all connections of a process to the same database
 * file; a checkpoint through such a connection copies old frames into the new file and corrupts
 * it, and capture would read the app's new WAL as if it continued the old one. So before every
 * checkpoint, lock and read, pitr checks the paths against what its connections hold, and lets go
 * of everything at the first difference.
 *
 * Content: a file copied over the database in place keeps its inode. Its header then matches no
 * version of page 1 that SQLite wrote: the database header only ever changes by a checkpoint
 * copying a page-1 frame from the WAL, and pitr has read every frame a checkpoint may copy (it holds
 * a read transaction whose mark bounds them). So the guard remembers the header the file had when
 * it was opened and every page-1 image captured since, and a header that is none of them is a
 * foreign write. The check is only sound when every frame up to the read mark was captured: the
 * caller says when (Capture's markAhead).
 */
export class FileGuard {
  readonly dbPath: string;
  private readonly ids: Record<Part, FileId>;
  private readonly fd: number;
  /** Hashes of headers the file may legitimately have (see the class comment). */
  private known = new Set<number>();
  /** The newest header noted: what the file holds once the WAL has been checkpointed in full. */
  private latest: number | undefined;
  private headerCheck = true;
  private readonly buf = Buffer.alloc(HEADER_BYTES);

  private constructor(dbPath: string, ids: Record<Part, FileId>, fd: number) {
    this.dbPath = dbPath;
    this.ids = ids;
    this.fd = fd;
  }

  /**
   * Record the files pitr's connections hold, right after they opened them. `fd` is a descriptor
   * of the database file that stays open as long as the guard is used (SourceDb's shared handle).
   * Returns a reason instead when they already differ from the paths (the files changed while the
   * connections were opening).
   */
  static open(dbPath: string, fd: number): FileGuard | string {
    const abs = resolve(dbPath);
    const ids = {} as Record<Part, FileId>;
    for (const part of ['database', '-wal', '-shm'] as const) {
      const id = idAt(pathOf(abs, part));
      if (!id) return `${describePart(abs, part)} does not exist`;
      ids[part] = id;
    }
    const fdId = statSync(`/dev/fd/${fd}`, { throwIfNoEntry: false }) ?? undefined;
    if (fdId && !same(fdId, ids.database)) return `${describePart(abs, 'database')} was replaced while pitr opened it`;
    const held = heldByProcess(realpathSync(abs));
    for (const [part, list] of held) {
      for (const h of list) {
        if (!same(h, ids[part])) return `${describePart(abs, part)} is not the file pitr's SQLite connections hold (it was removed or replaced while they opened)`;
      }
    }
    const guard = new FileGuard(abs, ids, fd);
    guard.noteCurrentHeader();
    return guard;
  }

  /**
   * Accept the header the file has now. Only for when no foreign write can be told from a
   * checkpoint's (capture starting, before it has read the WAL it starts from).
   */
  noteCurrentHeader(): void {
    const h = this.readHeader();
    if (h !== undefined) this.noteHash(h);
  }

  /**
   * Null while the database, -wal and -shm at their paths are the files the connections hold;
   * otherwise what changed, in words for the log. Synchronous, so that nothing of pitr's runs
   * between it and the SQLite call it guards.
   */
  identityProblem(): string | null {
    for (const part of ['database', '-wal', '-shm'] as const) {
      const id = idAt(pathOf(this.dbPath, part));
      if (!id) return `${describePart(this.dbPath, part)} was removed`;
      if (!same(id, this.ids[part])) return `${describePart(this.dbPath, part)} was replaced by another file`;
    }
    return null;
  }

  /**
   * identityProblem, then the header: only when the caller has captured every frame up to its
   * read mark (see the class comment). A header that is not known is read once more before it
   * counts: a read may race a checkpoint's write of page 1.
   */
  problem(captureComplete: boolean): string | null {
    const id = this.identityProblem();
    if (id || !captureComplete || !this.headerCheck) return id;
    for (let attempt = 0; attempt < 2; attempt++) {
      const h = this.readHeader();
      if (h !== undefined && this.known.has(h)) return null;
    }
    const size = statSync(this.dbPath, { throwIfNoEntry: false })?.size ?? 0;
    if (size < HEADER_BYTES) return `the database file ${this.dbPath} was truncated to ${size} bytes outside SQLite`;
    return `the database file ${this.dbPath} was written outside SQLite (its header is no version pitr captured: a file copied over it?)`;
  }

  /** A page-1 image pitr captured from the WAL: a header the file may get from a checkpoint. */
  notePageOne(page: Uint8Array): void {
    if (page.length >= HEADER_BYTES) this.noteHash(hashHeader(page));
  }

  /**
   * The WAL was restarted or truncated: every frame of the old incarnation was checkpointed, so the
   * file holds the newest header noted, and older ones can no longer appear.
   */
  walRestarted(): void {
    this.known = new Set(this.latest === undefined ? [] : [this.latest]);
    this.headerCheck = true;
  }

  private noteHash(h: number): void {
    this.latest = h;
    if (!this.headerCheck) return;
    this.known.add(h);
    if (this.known.size > MAX_KNOWN_HEADERS) {
      // A WAL that never restarts under steady writes: stop checking rather than grow without end.
      this.headerCheck = false;
      this.known.clear();
    }
  }

  private readHeader(): number | undefined {
    try {
      const n = readSync(this.fd, this.buf, 0, HEADER_BYTES, 0);
      return n === HEADER_BYTES ? hashHeader(this.buf) : undefined;
    } catch {
      return undefined;
    }
  }
}

/** The error for a change the guard found: pitr lets go of the database and starts over. */
export function filesChanged(problem: string): PitrError {
  return new PitrError('DB_FILES_CHANGED', problem, 'pitr let go of the database without writing to it, and starts over on the files it finds (a new generation)');
}

function pathOf(abs: string, part: Part): string {
  return part === 'database' ? abs : `${abs}${part}`;
}

function describePart(abs: string, part: Part): string {
  return part === 'database' ? `the database file ${abs}` : `the ${part} file ${abs}${part}`;
}

function idAt(path: string): FileId | null {
  try {
    const st = statSync(path);
    return { dev: st.dev, ino: st.ino };
  } catch (err) {
    if (errnoCode(err) === 'ENOENT') return null;
    throw err;
  }
}

function same(a: FileId, b: FileId): boolean {
  return a.dev === b.dev && a.ino === b.ino;
}

/**
 * The -wal and -shm files that descriptors of this process have open for the database at `abs`,
 * removed ones included (Linux names them "PATH (deleted)"). Empty where /proc is not available:
 * then the paths as stat'd at open time stand for what the connections hold.
 */
function heldByProcess(abs: string): Map<'-wal' | '-shm', FileId[]> {
  const out = new Map<'-wal' | '-shm', FileId[]>();
  for (const f of heldFiles([`${abs}-wal`, `${abs}-shm`]) ?? []) {
    const part = f.path === `${abs}-wal` ? '-wal' : '-shm';
    const list = out.get(part) ?? [];
    list.push({ dev: f.dev, ino: f.ino });
    out.set(part, list);
  }
  return out;
}

/** 52 bits of two FNV-1a passes over the header: a collision would need ~2^26 headers in one WAL. */
function hashHeader(b: Uint8Array): number {
  let h1 = 0x811c9dc5;
  let h2 = 0x01000193 ^ 0x5bd1e995;
  for (let i = 0; i < HEADER_BYTES; i++) {
    const c = b[i] as number;
    h1 = Math.imul(h1 ^ c, 0x01000193);
    h2 = Math.imul(h2 ^ c, 0x5bd1e995) ^ (h2 >>> 15);
  }
  return (h1 >>> 0) * 0x100000 + ((h2 >>> 0) & 0xfffff);
}
