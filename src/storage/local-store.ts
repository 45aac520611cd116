import path from 'node:path';
import { pathToFileURL } from 'node:url';

import { FileStorage } from './file/file-storage.js';
import type { RequestOptions, StorageClient } from './storage-client.js';

/**
 * A store in a directory on a local disk that pitr owns (the agent's spool): the storage contract,
 * plus reading an object in chunks of reused buffers. What the core gets instead of a backend
 * class, so that nothing outside src/storage/ imports one.
 */
export interface LocalStore extends StorageClient {
  /**
   * The object's bytes in order, in chunks of up to `chunkBytes`; a chunk is valid only until the
   * next one is asked for (what put() promises of its body, PutBody), so spooled snapshots shipped
   * to every replica cost two buffers, not one per read.
   */
  readChunks(key: string, opts?: RequestOptions & { chunkBytes?: number }): AsyncGenerator<Uint8Array>;
}

/**
 * The local store in `dir` (absolute, or resolved against the cwd). Puts are durable (fsync'd,
 * renamed, directory fsync'd) and take the local-disk fast path; never use it for a replica on a
 * network mount, where a synchronous call could block the event loop while the mount hangs.
 * Does no I/O.
 */
export function openLocalStore(dir: string): LocalStore {
  const abs = path.resolve(dir);
  return new FileStorage(abs, pathToFileURL(abs).href, { localDisk: true });
}
