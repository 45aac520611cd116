import type { CheckpointResult } from '../../db/source-db.js';

/** What a capture pass, or one step of it (a catch-up, a checkpoint), did. */
export interface PassResult {
  transactions: number;
  bytes: number;
  /** Set when continuity is lost mid-run: the agent must start a new generation. */
  broken?: string;
  checkpoint?: CheckpointResult;
}

/** Adds r's counts to total, and its checkpoint and break when it has them; false when r broke the chain. */
export function addPass(total: PassResult, r: PassResult): boolean {
  total.transactions += r.transactions;
  total.bytes += r.bytes;
  if (r.checkpoint) total.checkpoint = r.checkpoint;
  if (r.broken) total.broken = r.broken;
  return !r.broken;
}
