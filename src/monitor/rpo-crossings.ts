import type { Logger } from '../log.js';
import type { HealthReport } from './health.js';

/**
 * Logs when a replica crosses the RPO objective (--max-lag), either way, once per crossing. Fed
 * every health evaluation (each tick and each scrape), so a scrape never sees a 503 the log does
 * not mention.
 */
export class RpoCrossings {
  private readonly lagging = new Set<string>();

  constructor(
    private readonly maxLagMs: number | undefined,
    private readonly log: Logger,
  ) {}

  note(report: HealthReport): void {
    const max = this.maxLagMs;
    if (max === undefined) return;
    for (const r of report.replicas) {
      const was = this.lagging.has(r.url);
      if (!r.healthy && !was) {
        this.lagging.add(r.url);
        this.log.warn('replica is behind the RPO objective (--max-lag)', { replica: r.url, lagSeconds: r.lagSeconds, maxLagSeconds: max / 1000 });
      } else if (r.healthy && was) {
        this.lagging.delete(r.url);
        this.log.info('replica is back within the RPO objective (--max-lag)', { replica: r.url, lagSeconds: r.lagSeconds, maxLagSeconds: max / 1000 });
      }
    }
  }
}
