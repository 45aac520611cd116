import { PitrError, isPitrError } from '../errors.js';
import type { Catalog } from '../catalog/catalog.js';
import { decodeSegment, readSnapshot } from '../segment/index.js';
import { GENERATIONS_PREFIX } from '../segment/object-names.js';
import type { StorageClient } from '../storage/storage-client.js';
import { problemFrom, throwIfAborted } from './problems.js';
import { mapBounded } from '../util/bounded.js';
import type { VerifyResult } from './verify-report.js';

/** Objects downloaded and checked at once: enough to hide request latency, few enough for memory. */
const CHECK_CONCURRENCY = 4;

interface ObjectRef {
  key: string;
  size: number;
  kind: 'snapshot' | 'segment';
}

/** Check every listed object; returns the keys found bad, with why (for the restore steps to plan around). */
export async function checkObjects(
  storage: StorageClient,
  catalog: Catalog,
  result: VerifyResult,
  signal: AbortSignal | undefined,
  onProgress: ((done: number, total: number) => void) | undefined,
): Promise<Map<string, string>> {
  const refs: ObjectRef[] = [];
  for (const g of catalog.generations) {
    for (const s of g.snapshots) refs.push({ key: s.key, size: s.size, kind: 'snapshot' });
    for (const s of g.segments) refs.push({ key: s.key, size: s.size, kind: 'segment' });
    for (const d of g.damaged) refs.push({ key: d.key, size: d.size, kind: d.kind });
  }
  refs.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
  const bad = new Map<string, string>();
  const vanished: ObjectRef[] = [];
  const failures: { ref: ObjectRef; err: unknown }[] = [];
  let done = 0;
  onProgress?.(0, refs.length);
  await mapBounded(refs, CHECK_CONCURRENCY, async (ref) => {
    try {
      await checkObject(storage, ref, signal);
      result.objectsChecked++;
      result.bytesChecked += ref.size;
    } catch (err) {
      throwIfAborted(signal, err);
      if (isPitrError(err, 'OBJECT_NOT_FOUND')) vanished.push(ref);
      else failures.push({ ref, err });
    }
    onProgress?.(++done, refs.length);
  });

  if (vanished.length > 0) {
    // Retention may delete objects between our LIST and our GET; only objects that are still
    // listed yet cannot be read are a problem.
    const still = new Set((await storage.list(GENERATIONS_PREFIX, signal ? { signal } : {})).map((o) => o.key));
    for (const ref of vanished) {
      if (still.has(ref.key)) failures.push({ ref, err: new PitrError('OBJECT_NOT_FOUND', `${ref.kind} ${ref.key} is listed but cannot be read`, 'check the storage backend') });
    }
  }
  failures.sort((a, b) => (a.ref.key < b.ref.key ? -1 : 1));
  for (const { ref, err } of failures) {
    bad.set(ref.key, err instanceof Error ? err.message : String(err));
    result.objectsChecked += isPitrError(err, 'OBJECT_CORRUPT') ? 1 : 0;
    result.problems.push(problemFrom(err, isPitrError(err, 'OBJECT_CORRUPT') ? 'checksum' : 'read', ref.key));
  }
  return bad;
}

async function checkObject(storage: StorageClient, ref: ObjectRef, signal: AbortSignal | undefined): Promise<void> {
  const req = signal ? { signal } : {};
  if (ref.kind === 'segment') {
    // decodeSegment checks the trailer checksum, then the header against the key and every record.
    await decodeSegment(await storage.get(ref.key, req), ref.key);
    return;
  }
  // Snapshots can be as large as the database: stream them, keeping no page.
  const stream = await storage.getStream(ref.key, req);
  await readSnapshot(stream, () => {}, { name: ref.key, ...(signal ? { signal } : {}) });
}
