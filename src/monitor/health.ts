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
