/**
 * What a running agent answers on its control socket, and what `pitr sync`, `pitr snapshot` and
 * `pitr agent status` ask. One JSON request per connection, one JSON answer, then close.
 */

export type ControlRequest =
  /** Capture now and wait until every replica holds what was captured (or timeoutMs passes). */
  | { op: 'sync'; db?: string; timeoutMs?: number }
  /** Take a snapshot of one database now and wait until it is spooled and shipped. */
  | { op: 'snapshot'; db: string; timeoutMs?: number }
  /** What the agent replicates, each replica's position and lag. */
  | { op: 'status' }
  /** Does this agent replicate DB? (used by clients to find the right agent) */
  | { op: 'has'; db: string };

export interface ReplicaState {
  url: string;
  /** Newest txid durable in the replica (0 = none yet). */
  txid: number;
  lagSeconds: number;
  healthy: boolean;
}

export interface DbState {
  /** Absolute path of the database. */
  db: string;
  generation: string;
  /** Newest captured txid. */
  txid: number;
  replicas: ReplicaState[];
}

export interface AgentStatus {
  pid: number;
  version: string;
  startedAt: string;
  config: string | undefined;
  dbs: DbState[];
}

export interface SyncResult {
  db: string;
  txid: number;
  /** Per replica: reached the txid (true) or not within the timeout. */
  replicas: { url: string; txid: number; ok: boolean }[];
  /** Why this database is not replicating (it could not start): nothing could be shipped. */
  error?: string;
  /** Not replicating yet, and nothing to ship: it waits for its file, or is opening. */
  note?: string;
}

export interface SnapshotResult {
  db: string;
  txid: number;
  key: string;
  shipped: boolean;
}

export type ControlResponse =
  | { ok: true; result: unknown }
  | { ok: false; error: { code: string; message: string; hint?: string } };

/** What the supervisor implements for the socket server. Errors thrown are PitrErrors. */
export interface ControlHandlers {
  sync(db: string | undefined, timeoutMs: number): Promise<SyncResult[]>;
  snapshot(db: string, timeoutMs: number): Promise<SnapshotResult>;
  status(): AgentStatus;
  has(db: string): boolean;
}
