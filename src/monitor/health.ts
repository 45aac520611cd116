/** One replica's standing against the RPO objective. */
export interface ReplicaHealth {
  url: string;
  lagSeconds: number;
  healthy: boolean;
  lastTxid: number;
  lastCommitTime: number;
}

export interface HealthReport {
  status: 'ok' | 'lagging';
  db: string;
  maxLagSeconds: number | null;
  replicas: ReplicaHealth[];
}

/** Pure: the /healthz body. With no objective every replica counts as healthy (lag is reported). */
export function healthReport(db: string, maxLagMs: number | undefined, replicas: Omit<ReplicaHealth, 'healthy'>[]): HealthReport {
  const rows = replicas.map((r) => ({ ...r, healthy: maxLagMs === undefined || r.lagSeconds * 1000 <= maxLagMs }));
  return {
    status: rows.every((r) => r.healthy) ? 'ok' : 'lagging',
    db,
    maxLagSeconds: maxLagMs === undefined ? null : maxLagMs / 1000,
    replicas: rows,
  };
}

/** Pure: the /healthz body of an agent with several databases: healthy only when all are. */
export interface AgentHealthReport {
  status: 'ok' | 'lagging';
  databases: number;
  /** The databases that are not healthy, each with its replicas (all of them when there is one database). */
  unhealthy: HealthReport[];
  /** 'restoring' while --restore-if-missing restores (healthy: the agent is working, nothing lags yet). */
  phase?: 'restoring';
  /** With one database, its report's fields too, as a one-database agent always answered. */
  db?: string;
  maxLagSeconds?: number | null;
  replicas?: ReplicaHealth[];
}

export function agentHealthReport(reports: readonly HealthReport[]): AgentHealthReport {
  const unhealthy = reports.filter((r) => r.status !== 'ok');
  const body: AgentHealthReport = { status: unhealthy.length === 0 ? 'ok' : 'lagging', databases: reports.length, unhealthy };
  const only = reports.length === 1 ? reports[0] : undefined;
  if (only) return { ...body, db: only.db, maxLagSeconds: only.maxLagSeconds, replicas: only.replicas };
  return body;
}
