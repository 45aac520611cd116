import type { Logger } from '../../log.js';
import { formatDuration } from '../../util/duration.js';
import type { CatchUpResult } from './catch-up.js';

/** Say what a start that continued a generation did about the time the agent was not capturing. */
export function logCatchUp(log: Logger, started: { reason: string; catchUp?: CatchUpResult; fingerprintNote?: string }): void {
  if (started.fingerprintNote) log.info('fingerprint', { note: started.fingerprintNote });
  const r = started.catchUp;
  if (r?.kind === 'same') {
    log.info('the database is unchanged since the last captured transaction; no catch-up step needed', { reason: started.reason, pages: r.pages, read: formatDuration(r.readMs) });
  } else if (r?.kind === 'step') {
    log.info('catch-up step: what changed while the agent was not capturing ships as one step', {
      reason: started.reason,
      txid: r.txid,
      pages: r.changed,
      of: r.pages,
      bytes: r.bytes,
      downtimeFrom: new Date(r.from).toISOString(),
      downtimeTo: new Date(r.time).toISOString(),
      read: formatDuration(r.readMs),
    });
  }
}
