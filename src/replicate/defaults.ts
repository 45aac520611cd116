/**
 * Transitional: the defaults moved to src/config/defaults.ts. Kept only so that
 * src/cli/replicate-command.ts builds until it takes its options from src/cli/replicate-options.ts;
 * delete this file then.
 */
export { DEFAULT_SNAPSHOT_WAL_MIN_BYTES, DEFAULT_SNAPSHOT_WAL_RATIO, DEFAULT_WAL_RESET_BYTES } from '../config/defaults.js';
