import { PitrError } from '../errors.js';
import type { ObjectInfo, StorageClient } from '../storage/storage-client.js';
import { buildCatalog, type Catalog } from '../catalog/catalog.js';
import { GENERATIONS_PREFIX } from '../segment/object-names.js';
import { readReplicaMarker, type Heartbeat } from '../monitor/heartbeat.js';

/** What one look at a replica found: its marker, its objects, and the catalog of both. */
export interface ReplicaView {
  marker: Heartbeat | null;
  objects: ObjectInfo[];
  catalog: Catalog;
  /** An unreadable marker, ... */
  notes: string[];
}

/**
 * GET the replica's marker, then LIST it once, and build the catalog; REPLICA_NOT_FOUND when the
 * root does not exist. The order matters: the agent writes the marker only after the objects it
 * names are durable, so every object it names was there before this LIST started. Read after the
 * LIST, a marker could name an upload the LIST missed, and a healthy replica would look
 * incomplete. Costs one small GET and the LIST (the existence check only when both find nothing).
 */
export async function loadReplica(storage: StorageClient, opts: { signal?: AbortSignal; damaged?: ReadonlyMap<string, string> } = {}): Promise<ReplicaView> {
  const req = opts.signal ? { signal: opts.signal } : {};
  const notes: string[] = [];
  const read = await readReplicaMarker(storage, opts.signal);
  if (read.note !== undefined) notes.push(`${read.note}; the newest objects are not proven by a marker`);
  const marker = read.marker;
  const objects = await storage.list(GENERATIONS_PREFIX, req);
  if (objects.length === 0 && marker === null && !(await storage.exists(req))) {
    throw new PitrError('REPLICA_NOT_FOUND', `replica ${storage.url} does not exist`, 'check the URL; a file replica is a directory created by `pitr replicate`');
  }
  const catalog = buildCatalog(objects, { marker, ...(opts.damaged ? { damaged: opts.damaged } : {}) });
  return { marker, objects, catalog, notes };
}

/** The catalog of a replica (marker, then one LIST); REPLICA_NOT_FOUND when the root does not exist. */
export async function loadCatalog(storage: StorageClient, signal?: AbortSignal): Promise<Catalog> {
  return (await loadReplica(storage, signal ? { signal } : {})).catalog;
}
