/**
 * The verify worker's entry (a worker_threads Worker started by verifyInWorker): open the replica
 * from its URL, verify it against the live database, post the report back, end. A module of its
 * own so that the worker loads only what verification needs; does nothing outside a worker.
 */
import { isMainThread, parentPort, workerData } from 'node:worker_threads';
import { PitrError } from '../errors.js';
import { openStorage } from '../storage/open-storage.js';
import { verifyReplica } from './verify-replica.js';
import type { WorkerReply, WorkerRequest } from './verify-worker.js';

async function run(req: WorkerRequest): Promise<WorkerReply> {
  try {
    const storage = await openStorage(req.url);
    try {
      const report = await verifyReplica({ storage, dbPath: req.dbPath, stateDir: req.stateDir, tmpDir: req.tmpDir });
      return { kind: 'report', report };
    } finally {
      await storage.close();
    }
  } catch (err) {
    // Only plain data crosses threads: an Error would lose its code, hint and class on the way.
    if (err instanceof PitrError) return { kind: 'error', error: { code: err.code, message: err.message, ...(err.hint ? { hint: err.hint } : {}) } };
    return { kind: 'error', error: { code: 'VERIFY_FAILED', message: `verification failed: ${err instanceof Error ? err.message : String(err)}` } };
  }
}

if (!isMainThread && parentPort !== null) {
  const port = parentPort;
  void run(workerData as WorkerRequest).then((reply) => port.postMessage(reply));
}
