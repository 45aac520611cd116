import { downtimeMs, totalDowntimeMs, type CatchUp } from '../catalog/catch-ups.js';
import { formatBytes, formatDuration } from '../util/duration.js';
import { iso } from './cli-util.js';

/**
 * How list, status and restore show a catch-up step: the same words and the same JSON fields in
 * each (times as ISO strings with an `...Ms` twin, as the rest of their JSON).
 */

export interface CatchUpJson {
  txid: number;
  from: string | null;
  fromMs: number | null;
  to: string;
  toMs: number;
  downtimeMs: number | null;
  key: string;
  bytes: number;
}

export function catchUpJson(c: CatchUp): CatchUpJson {
  return { txid: c.txid, from: c.from === null ? null : iso(c.from), fromMs: c.from, to: iso(c.to), toMs: c.to, downtimeMs: downtimeMs(c), key: c.key, bytes: c.bytes };
}

/** "FROM .. TO", the date left out of TO when it is FROM's. */
export function downtimeSpan(c: CatchUp): string {
  const to = iso(c.to);
  if (c.from === null) return `(start unknown: txid ${c.txid - 1} is in no intact object) .. ${to}`;
  const from = iso(c.from);
  return `${from} .. ${from.slice(0, 11) === to.slice(0, 11) ? to.slice(11) : to}`;
}

/** One line per step, for `pitr list`. */
export function describeCatchUp(c: CatchUp): string {
  const ms = downtimeMs(c);
  const how = ms === null ? 'downtime' : `${formatDuration(ms)} of downtime`;
  return `catch-up txid ${c.txid}: ${how} ${downtimeSpan(c)} (changes made while the agent was down, one step), ${formatBytes(c.bytes)}`;
}

/** "41s of downtime in all", and how many steps start where the listing cannot tell. */
export function describeTotalDowntime(steps: readonly CatchUp[]): string {
  const unknown = steps.filter((c) => c.from === null).length;
  return `${formatDuration(totalDowntimeMs(steps))} of downtime in all${unknown > 0 ? ` (not counting ${unknown} of unknown start)` : ''}`;
}
