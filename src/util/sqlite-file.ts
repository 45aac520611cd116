import { open } from 'node:fs/promises';

const SQLITE_MAGIC = Buffer.from('SQLite format 3\0', 'latin1');

/** True when `path` is a file that starts with SQLite's header (reads 16 bytes, writes nothing). */
export async function looksLikeSqliteDatabase(path: string): Promise<boolean> {
  try {
    const fh = await open(path, 'r');
    try {
      const head = Buffer.alloc(SQLITE_MAGIC.length);
      const { bytesRead } = await fh.read(head, 0, head.length, 0);
      return bytesRead === head.length && head.equals(SQLITE_MAGIC);
    } finally {
      await fh.close();
    }
  } catch {
    return false;
  }
}
