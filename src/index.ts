/**
 * pitr as a library: what the CLI is built from, for programs that embed the agent or restore
 * databases themselves. Everything here is a named export; nothing runs on import.
 */

// Errors: one class, a stable code per failure, a hint for the user.
export { PitrError, isPitrError, type ErrorCode } from './errors.js';
export { createLogger, silentLogger, type Logger, type LogLevel } from './log.js';

// Configuration: the resolved shape an agent runs, from a YAML file or from flags.
export type { AgentConfig, DbSpec, PathDbSpec, DirDbSpec, DbSettings, ReplicaSettings, ReplicaSpec } from './config/config-types.js';
export { loadConfig, parseConfig } from './config/load-config.js';
export { configFromFlags } from './config/config-from-flags.js';

// The agent: one supervisor for one or many databases.
export { Supervisor, type SupervisorOptions } from './agent/supervisor.js';
export type { AgentStatus, SyncResult, SnapshotResult } from './agent/control-protocol.js';

// Storage: replicas by URL; new backends register their scheme.
export { openStorage, parseReplicaUrl, type ReplicaUrl } from './storage/open-storage.js';
export { registerBackend, type StorageBackend } from './storage/registry.js';
export type { StorageClient, ObjectInfo } from './storage/storage-client.js';

// Restore: plan (pure) and execute.
export { planRestore, type RestorePlan, type RestoreTarget } from './restore/plan.js';
export { restore, type RestoreOptions, type RestoreResult } from './restore/restore.js';
export { loadCatalog, loadReplica } from './restore/replica-view.js';
export { buildCatalog, type Catalog } from './catalog/catalog.js';
export { catchUpsOf, type CatchUp } from './catalog/catch-ups.js';

// Verification of a replica: every checksum, a test restore, a live comparison.
export { verifyReplica, type VerifyOptions, type VerifyResult } from './verify/verify-replica.js';
export { verifyInWorker } from './verify/verify-worker.js';
