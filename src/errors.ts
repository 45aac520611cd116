/**
 * One error class for everything pitr reports to a user. `code` is stable and machine-readable,
 * `message` says what happened (naming the thing), `hint` says what to do about it.
 */
export type ErrorCode =
  | 'USAGE'
  | 'CONFIG_INVALID'
  | 'CONFIG_NOT_FOUND'
  | 'BAD_DURATION'
  | 'BAD_SIZE'
  | 'BAD_TIME'
  | 'PERMISSION_DENIED'
  | 'STATE_DIR_INVALID'
  | 'STATE_DIR_LOCKED'
  | 'DB_DIR_NOT_FOUND'
  | 'BAD_REPLICA'
  | 'NOT_A_REPLICA'
  | 'DB_IN_USE'
  | 'DB_NOT_FOUND'
  | 'DB_IS_DIRECTORY'
  | 'DB_NOT_WAL'
  | 'DB_OPEN_FAILED'
  | 'DB_FILES_CHANGED'
  | 'WAL_INVALID'
  | 'REPLICA_URL_INVALID'
  | 'REPLICA_NOT_FOUND'
  | 'REPLICA_EMPTY'
  | 'REPLICA_INCOMPLETE'
  | 'OBJECT_NOT_FOUND'
  | 'OBJECT_CORRUPT'
  | 'CHAIN_BROKEN'
  | 'TARGET_OUT_OF_WINDOW'
  | 'OUTPUT_EXISTS'
  | 'OUTPUT_INVALID'
  | 'INTEGRITY_CHECK_FAILED'
  | 'STORAGE_IO'
  | 'SPOOL_CORRUPT'
  | 'ABORTED'
  | 'VERIFY_MISMATCH'
  | 'VERIFY_FAILED'
  | 'PRECONDITION_FAILED'
  | 'REPLICA_LEASED'
  | 'REPLICA_LEASE_LOST'
  | 'REPLICA_OWNED_BY_OTHER_DB'
  | 'TOO_MANY_OPEN_FILES'
  | 'AGENT_NOT_RUNNING'
  | 'CONTROL_SOCKET_IN_USE'
  | 'CONTROL_SOCKET_UNSAFE'
  | 'CONTROL_FAILED'
  | 'EXEC_FAILED';

export class PitrError extends Error {
  readonly code: ErrorCode;
  readonly hint: string | undefined;
  /**
   * A storage failure no retry can cure (credentials, permissions, a missing bucket, a read-only
   * file system): backends set it, so that the core can refuse at start instead of retrying forever
   * without knowing any backend.
   */
  readonly permanent: boolean;

  constructor(code: ErrorCode, message: string, hint?: string, options?: { cause?: unknown; permanent?: boolean }) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'PitrError';
    this.code = code;
    this.hint = hint;
    this.permanent = options?.permanent ?? false;
  }
}

/** True when `err` is a PitrError with the given code (or any PitrError when no code is given). */
export function isPitrError(err: unknown, code?: ErrorCode): err is PitrError {
  return err instanceof PitrError && (code === undefined || err.code === code);
}

/** Node's errno code of an fs error (ENOENT, EISDIR, ...), or undefined. */
export function errnoCode(err: unknown): string | undefined {
  if (typeof err === 'object' && err !== null && 'code' in err) {
    const code = (err as { code: unknown }).code;
    return typeof code === 'string' ? code : undefined;
  }
  return undefined;
}

/** One line for a status or a log: the message, and a PitrError's code after it. */
export function errorText(err: unknown): string {
  if (isPitrError(err)) return `${err.message} [${err.code}]`;
  return err instanceof Error ? err.message : String(err);
}

/** True when err (or an error it wraps) is a full disk or quota. */
export function isDiskFull(err: unknown): boolean {
  for (let e: unknown = err; e !== undefined && e !== null; e = (e as { cause?: unknown }).cause) {
    const code = errnoCode(e);
    if (code === 'ENOSPC' || code === 'EDQUOT') return true;
    if (typeof e !== 'object') break;
  }
  return false;
}
