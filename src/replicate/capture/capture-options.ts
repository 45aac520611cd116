import type { Logger } from '../../log.js';

export interface CaptureOptions {
  dbPath: string;
  stateDir: string;
  /** PASSIVE checkpoint once the WAL holds this many frames (all spooled). */
  checkpointFrames: number;
  /** TRUNCATE checkpoint once the WAL file is this large (0 = never). */
  truncateBytes: number;
  /**
   * Reset the WAL under a brief write lock once the captured part of the WAL is this large and
   * PASSIVE checkpoints alone cannot restart it (0 = never). See Checkpointer.resetWal.
   */
  resetBytes: number;
  log: Logger;
}
