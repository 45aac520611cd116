import type { Catalog } from '../catalog/catalog.js';
import type { Logger } from '../log.js';
import type { Spool } from './spool.js';
import type { ShipperOptions } from './shipper-options.js';

/**
 * A txid names one transaction in a replica. The agent numbers a new generation above what the
 * spool and the replicas it could LIST at start hold; a replica it could not reach then may hold
 * more (another agent's history). Shipping there would give two transactions one txid, so such a
 * replica is refused, loudly, until the agent restarts while it is reachable.
 *
 * Returns why, when the replica must be refused (logged and counted as a failure here).
 */
export function refuseOverlap(catalog: Catalog, spool: Spool, log: Logger, events: ShipperOptions['events']): string | undefined {
  for (const gen of spool.generations()) {
    if (catalog.generations.some((g) => g.id === gen)) continue;
    const ours = [...spool.snapshotsOf(gen).map((e) => e.txid), ...spool.segmentsOf(gen).map((e) => e.firstTxid)];
    if (ours.length === 0) continue;
    const first = Math.min(...ours);
    const theirs = catalog.generations.filter((g) => g.id !== gen && g.newestTxid >= first);
    if (theirs.length === 0) continue;
    const overlap = `it holds txids up to ${Math.max(...theirs.map((g) => g.newestTxid))} (generation ${theirs.map((g) => g.id).join(', ')}), and this agent's generation ${gen} starts at txid ${first}`;
    log.error('replica refused: it was unreachable when the agent started and holds txids this agent reuses; nothing will be written to it', {
      problem: overlap,
      hint: 'restart the agent while this replica is reachable: its new generation then starts above every txid the replica holds',
    });
    events?.failed();
    return overlap;
  }
  return undefined;
}
