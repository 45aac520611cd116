import type { ErrorCode } from '../errors.js';

/** One thing that does not hold. `object` is the replica key when the problem is one object. */
export interface VerifyProblem {
  /** 'completeness': a hole, an orphaned segment, a missing base snapshot or generation (see catalog). */
  check: 'checksum' | 'read' | 'completeness' | 'restore' | 'integrity' | 'content';
  object?: string;
  message: string;
  /** The PitrError code behind it (OBJECT_CORRUPT, INTEGRITY_CHECK_FAILED, VERIFY_MISMATCH, ...). */
  code: ErrorCode | 'INTERNAL';
  hint?: string;
}

/** What `pitr verify` found. Plain data (structured-clone safe): it crosses from the verify worker. */
export interface VerifyResult {
  /** True only when every check that ran held (a skipped content comparison is not a failure). */
  ok: boolean;
  replica: string;
  /** Generation, txid and commit time the restore ended at (null/0 when it could not run). */
  generation: string | null;
  txid: number;
  commitTime: number;
  objectsChecked: number;
  bytesChecked: number;
  /** 'ok', or why the restore failed its integrity check, or 'skipped: ...' when no restore ran. */
  integrity: 'ok' | string;
  content: 'match' | 'mismatch' | 'skipped';
  /** Why the content was not compared, or at which txid it was. */
  contentNote?: string;
  /** The txid the live database was compared at. */
  contentTxid?: number;
  /** The newest txid the replica is known to have reached (latest generation), and whether the marker proves it. */
  newestTxid: number;
  proven: boolean;
  /** Things worth saying that are not failures (the newest uploads not proven by the marker yet, ...). */
  notes: string[];
  problems: VerifyProblem[];
  durationMs: number;
}

/** The report of one verification; the same type whether it ran here or in a worker. */
export type VerifyReport = VerifyResult;
