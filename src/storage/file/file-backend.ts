import type { StorageBackend } from '../registry.js';
import { parseFileReplica, type FileReplicaUrl } from './file-url.js';

/** file:// replicas and bare directory paths. */
export const fileBackend: StorageBackend<FileReplicaUrl> = {
  scheme: 'file',
  example: 'a directory path (/var/backups/app or ./backups), a file URL (file:///var/backups/app)',
  parse: parseFileReplica,
  async open(parsed) {
    const { FileStorage } = await import('./file-storage.js');
    return new FileStorage(parsed.path, parsed.url);
  },
};
