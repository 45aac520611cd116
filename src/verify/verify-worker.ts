import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Worker } from 'node:worker_threads';
import { PitrError, type ErrorCode } from '../errors.js';
import type { VerifyReport } from './verify-report.js';

/** What verifyInWorker verifies: a replica (by URL, opened in the worker) against the live database. */
export interface VerifyInWorkerRequest {
  url: string;
  dbPath: string;
  stateDir: string;
}

/** workerData of the verify worker. */
export interface WorkerRequest extends VerifyInWorkerRequest {
  /** A temp dir the caller owns and removes, whatever becomes of the worker. */
  tmpDir: string;
}

/** The one message the worker posts before it ends. */
export type WorkerReply =
  | { kind: 'report'; report: VerifyReport }
  | { kind: 'error'; error: { code: ErrorCode; message: string; hint?: string } };

// The compiled entry sits next to this file (dist/src/verify/).
const ENTRY = new URL('./verify-worker-entry.js', import.meta.url);

/**
 * verifyReplica in a worker thread, so that digesting a database and decoding objects never stall
 * the caller's event loop (capture, /healthz, WAL resets). The worker opens its own storage client
 * from `url`. Resolves with the report; rejects with the PitrError the verification threw
 * (REPLICA_EMPTY, DB_NOT_FOUND, ...), VERIFY_FAILED when the worker died, or ABORTED when `signal`
 * aborts, which terminates the worker (SQLite connections close with it). Its temp files are
 * removed in every case.
 */
export async function verifyInWorker(req: VerifyInWorkerRequest, signal?: AbortSignal): Promise<VerifyReport> {
  if (signal?.aborted) throw aborted(signal.reason);
  const tmpDir = await mkdtemp(join(tmpdir(), 'pitr-verify-worker-'));
  try {
    return await runWorker({ url: req.url, dbPath: req.dbPath, stateDir: req.stateDir, tmpDir }, signal);
  } finally {
    await rm(tmpDir, { recursive: true, force: true, maxRetries: 3 });
  }
}

/** Settles once the worker thread has exited, so nothing of it outlives the call. */
function runWorker(workerData: WorkerRequest, signal: AbortSignal | undefined): Promise<VerifyReport> {
  return new Promise<VerifyReport>((resolve, reject) => {
    const worker = new Worker(ENTRY, { workerData });
    let reply: WorkerReply | undefined;
    let failure: Error | undefined;
    const onAbort = (): void => {
      if (reply !== undefined) return;
      failure ??= aborted(signal?.reason);
      void worker.terminate();
    };
    signal?.addEventListener('abort', onAbort, { once: true });
    // An abort while the temp dir was being made fires no event for a listener added after it.
    if (signal?.aborted) onAbort();
    worker.once('message', (m: WorkerReply) => {
      reply = m;
      // The reply is the worker's last act; ending it here leaves no thread behind a stray handle.
      void worker.terminate();
    });
    worker.once('error', (err) => {
      failure ??= new PitrError('VERIFY_FAILED', `the verify worker failed: ${err.message}`, 'this is a bug in pitr; run `pitr verify` by hand to see more', { cause: err });
    });
    worker.once('exit', (code) => {
      signal?.removeEventListener('abort', onAbort);
      if (failure) return reject(failure);
      if (reply?.kind === 'report') return resolve(reply.report);
      if (reply?.kind === 'error') return reject(new PitrError(reply.error.code, reply.error.message, reply.error.hint));
      reject(new PitrError('VERIFY_FAILED', `the verify worker exited (code ${code}) without a report`, 'this is a bug in pitr; run `pitr verify` by hand to see more'));
    });
  });
}

function aborted(reason: unknown): PitrError {
  return new PitrError('ABORTED', 'verify was aborted', undefined, { cause: reason });
}
