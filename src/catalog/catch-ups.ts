import type { GenerationEntry } from './catalog.js';

/**
 * The catch-up steps of a generation as the listing shows them (docs/FORMAT.md, "Catch-up step").
 * A catch-up step is one txid holding everything that changed while the agent was down, so the
 * transactions made in that downtime cannot be told apart: commands show each step and the
 * downtime it covers, and a restore to a time inside one says what it restored. Pure.
 */
export interface CatchUp {
  generation: string;
  /** The step's txid: the state after it is the file as the agent found it when it came back. */
  txid: number;
  /**
   * Where the downtime starts: the commit time of txid - 1, from the intact object of the listing
   * that ends there (a segment's lastTime, or a snapshot's time). Null when no intact object
   * does (it is missing or damaged): the header's catchUpFrom says it, but a listing reads no
   * object.
   */
  from: number | null;
  /** Its own commit time: when the agent found the changes, where the downtime ends (ms). */
  to: number;
  key: string;
  /** Stored size of the step's object. */
  bytes: number;
}

/** The catch-up steps of `g` (intact ones), in txid order. */
export function catchUpsOf(g: GenerationEntry): CatchUp[] {
  const steps = g.segments.filter((s) => s.catchUp);
  if (steps.length === 0) return [];
  const ends = commitTimesOfEnds(g);
  const out: CatchUp[] = [];
  for (const s of steps) {
    if (out.some((c) => c.txid === s.firstTxid)) continue; // the same step listed twice: show it once
    out.push({ generation: g.id, txid: s.firstTxid, from: ends.get(s.firstTxid - 1) ?? null, to: s.firstTime, key: s.key, bytes: s.size });
  }
  return out.sort((a, b) => a.txid - b.txid);
}

/** The downtime a step covers (ms, never negative), or null when where it starts is unknown. */
export function downtimeMs(c: CatchUp): number | null {
  return c.from === null ? null : Math.max(0, c.to - c.from);
}

/** Sum of the known downtimes of `steps` (ms). */
export function totalDowntimeMs(steps: readonly CatchUp[]): number {
  let sum = 0;
  for (const c of steps) sum += downtimeMs(c) ?? 0;
  return sum;
}

/**
 * The catch-up step whose downtime `t` falls strictly inside, among the steps with txids in
 * (afterTxid, upToTxid]: the last commit at or before `t` is then txid - 1, and what happened
 * between that commit and the step is known only as the step.
 */
export function downtimeAt(g: GenerationEntry, t: number, afterTxid: number, upToTxid: number): CatchUp | undefined {
  return catchUpsOf(g).find((c) => c.txid > afterTxid && c.txid <= upToTxid && c.from !== null && c.from < t && t < c.to);
}

/**
 * What a time target inside the downtime of step `c` gets, in one sentence: `restored` says what
 * happened to the state before it ("restored", "the plan restores", ...), `restoredTxid` names it.
 */
export function describeInsideDowntime(c: CatchUp, restoredTxid: number, restored: string): string {
  const iso = (ms: number): string => new Date(ms).toISOString();
  const span = c.from === null ? `until ${iso(c.to)}` : `from ${iso(c.from)} to ${iso(c.to)}`;
  return (
    `the target falls inside a downtime of the agent (${span}): transactions made then are known only as one ` +
    `catch-up step (txid ${c.txid}); ${restored} the state before it, txid ${restoredTxid}. Use --txid ${c.txid} for the state after it.`
  );
}

/** txid -> commit time, for every txid an intact object of the listing ends at. */
function commitTimesOfEnds(g: GenerationEntry): Map<number, number> {
  const ends = new Map<number, number>();
  for (const s of g.snapshots) ends.set(s.txid, s.commitTime);
  for (const s of g.segments) ends.set(s.lastTxid, s.lastTime);
  return ends;
}
