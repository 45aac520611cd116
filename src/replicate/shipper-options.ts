import type { Logger } from '../log.js';

export interface ShipperOptions {
  /** Minimum spacing of uploads under sustained writes; 0 = upload every capture. */
  syncIntervalMs: number;
  /** Most uncompressed bytes merged into one uploaded segment (restore holds a body in memory). */
  maxSegmentBytes?: number;
  log: Logger;
  /** The generation capture is writing now. */
  currentGeneration: () => string;
  /** Ask the agent for a fresh snapshot of the current generation (this replica has no base). */
  requestSnapshot: () => void;
  /** Called after each successful upload (the agent trims the spool). */
  onShipped: () => void;
  /** Who writes the replica's marker (heartbeat.json); without it no marker is written. */
  agent?: { host: string; pid: number; version: string };
  /** Least spacing of marker writes after uploads (default MARKER_INTERVAL_MS); 0 = after every upload. */
  markerIntervalMs?: number;
  /** Upload accounting, for metrics. */
  events?: {
    uploaded(kind: 'segment' | 'snapshot' | 'heartbeat', bytes: number): void;
    failed(): void;
  };
}
