import type { RestoreTarget } from '../restore/plan.js';
import { InvalidArgumentError } from 'commander';
import { PitrError } from '../errors.js';
import { parseDuration, parseSize, parseTimestamp } from '../util/duration.js';

/**
 * commander argument parsers for durations, sizes and times. They throw the PitrError itself
 * (BAD_DURATION, BAD_SIZE, BAD_TIME), which commander passes through: main prints it in the usual
 * form, naming the option, the value and the units.
 */
export function durationArg(what: string): (v: string) => number {
  return (v) => parseDuration(v, what);
}

export function sizeArg(what: string): (v: string) => number {
  return (v) => parseSize(v, what);
}

export function timestampArg(what: string): (v: string) => number {
  return (v) => parseTimestamp(v, what);
}

export function positiveIntArg(v: string): number {
  if (!/^\d+$/.test(v.trim()) || !Number.isSafeInteger(Number(v)) || Number(v) < 1) {
    throw new InvalidArgumentError('expected a positive whole number');
  }
  return Number(v);
}

/** A non-negative decimal number, such as a ratio (0 usually means "off"). */
export function nonNegativeNumberArg(v: string): number {
  if (!/^\d+(\.\d+)?$/.test(v.trim())) throw new InvalidArgumentError('expected a number of 0 or more, like 1 or 0.5');
  return Number(v);
}

/** What --txid / --to ask for (the commands declare them as conflicting), latest otherwise. */
export function targetFromFlags(flags: { txid?: number; to?: number }): RestoreTarget {
  if (flags.txid !== undefined) return { kind: 'txid', txid: flags.txid };
  if (flags.to !== undefined) return { kind: 'time', timeMs: flags.to };
  return { kind: 'latest' };
}

/** A niceness for --nice: 0 (unchanged) to 19 (yield the most). */
export function niceArg(v: string): number {
  if (!/^\d+$/.test(v.trim()) || Number(v) > 19) throw new InvalidArgumentError('expected a whole number from 0 (unchanged) to 19');
  return Number(v);
}

/** Print an error the way every pitr command does, and return the exit code (1). */
export function reportError(err: unknown): number {
  if (err instanceof PitrError) {
    process.stderr.write(`pitr: error: ${err.message} [${err.code}]\n`);
    if (err.hint) process.stderr.write(`  hint: ${err.hint}\n`);
    if (process.env['PITR_DEBUG'] && err.cause) process.stderr.write(`  cause: ${String((err.cause as Error).stack ?? err.cause)}\n`);
  } else {
    const e = err as Error;
    process.stderr.write(`pitr: error: ${e?.message ?? String(err)} [INTERNAL]\n`);
    process.stderr.write('  hint: this is a bug in pitr; please report it with the command you ran\n');
    if (process.env['PITR_DEBUG']) process.stderr.write(`${e?.stack}\n`);
  }
  return 1;
}

export function iso(ms: number): string {
  return new Date(ms).toISOString();
}

