import { PitrError, isPitrError } from '../errors.js';
import type { VerifyProblem } from './verify-report.js';

/** A failure as a problem of the report, keeping its code and hint. */
export function problemFrom(err: unknown, check: VerifyProblem['check'], object?: string): VerifyProblem {
  if (err instanceof PitrError) {
    return { check, ...(object !== undefined ? { object } : {}), code: err.code, message: err.message, ...(err.hint ? { hint: err.hint } : {}) };
  }
  return { check, ...(object !== undefined ? { object } : {}), code: 'INTERNAL', message: `${object ? `${object}: ` : ''}${(err as Error)?.message ?? String(err)}` };
}

/**
 * Rethrow when `cause` is (or happened because of) an abort, so that an abort ends the whole run
 * instead of being collected as one more problem.
 */
export function throwIfAborted(signal: AbortSignal | undefined, cause: unknown): void {
  if (signal?.aborted) {
    if (isPitrError(cause, 'ABORTED')) throw cause;
    throw new PitrError('ABORTED', 'verify was aborted', undefined, { cause: signal.reason ?? cause });
  }
  if (cause !== undefined && isAbortError(cause)) throw cause;
}

function isAbortError(err: unknown): boolean {
  return typeof err === 'object' && err !== null && (err as { name?: unknown }).name === 'AbortError';
}
