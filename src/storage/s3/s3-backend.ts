import type { StorageBackend } from '../registry.js';
import { parseS3Url, type S3ReplicaUrl } from './s3-url.js';

/** s3:// replicas: AWS S3 and S3-compatible stores. */
export const s3Backend: StorageBackend<S3ReplicaUrl> = {
  scheme: 's3',
  example: 'an S3 URL (s3://bucket/prefix, optionally ?region=us-east-1&endpoint=https://host:9000&force-path-style=true)',
  parse: (input) => parseS3Url(input),
  async open(parsed, ctx) {
    // Loaded on demand so that the AWS SDK is only paid for (startup time, memory) by users of S3
    // replicas. Constructing the client does no I/O either.
    const [{ S3Storage }, { S3ClientPool }] = await Promise.all([import('./s3-storage.js'), import('./client-pool.js')]);
    return S3Storage.fromReplicaUrl(parsed, { clients: ctx.shared.get('s3.clients', () => new S3ClientPool()) });
  },
};
