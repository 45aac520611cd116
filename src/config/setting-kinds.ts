import { PitrError } from '../errors.js';
import { parseDuration, parseSize } from '../util/duration.js';

/**
 * The kinds of value a setting takes, one parser and one printer each. The YAML loader parses with
 * these; the CLI keeps its commander parsers (src/cli/cli-util.ts), which accept the same forms.
 */
export type SettingKind =
  | 'duration'
  | 'size'
  | 'positive-int'
  | 'non-negative-number'
  /** A whole number in [min, max] (the setting's range). */
  | 'int'
  | 'bool'
  | 'string'
  | 'enum'
  /** A command: a string (run through /bin/sh) or, in a file, a list (argv). */
  | 'command';

/** What a kind accepts, for messages that must say the accepted form. */
export function acceptedForm(kind: SettingKind, opts: { choices?: readonly string[]; range?: readonly [number, number] } = {}): string {
  switch (kind) {
    case 'duration':
      return 'a duration such as 500ms, 30s, 5m, 24h, 7d (or 0)';
    case 'size':
      return 'a size such as 64MiB, 1GiB, 500MB (or 0)';
    case 'positive-int':
      return 'a positive whole number';
    case 'non-negative-number':
      return 'a number of 0 or more, like 1 or 0.5';
    case 'int':
      return `a whole number from ${opts.range?.[0] ?? 0} to ${opts.range?.[1] ?? Number.MAX_SAFE_INTEGER}`;
    case 'bool':
      return 'true or false';
    case 'string':
      return 'a string';
    case 'enum':
      return `one of ${(opts.choices ?? []).join(', ')}`;
    case 'command':
      return 'a command string (run by /bin/sh) or a list of arguments';
  }
}

/**
 * Parse a scalar's text as `kind`. Throws PitrError naming `what` and the text, with the accepted
 * form as hint (durations and sizes: parseDuration's and parseSize's own messages).
 */
export function parseSettingText(
  kind: SettingKind,
  text: string,
  what: string,
  opts: { choices?: readonly string[]; range?: readonly [number, number] } = {},
): unknown {
  const bad = (why: string): PitrError =>
    new PitrError('CONFIG_INVALID', `invalid ${what} "${text}": ${why}`, `expected ${acceptedForm(kind, opts)}`);
  const t = text.trim();
  switch (kind) {
    case 'duration':
      return parseDuration(text, what);
    case 'size':
      return parseSize(text, what);
    case 'positive-int':
      if (!/^\d+$/.test(t) || !Number.isSafeInteger(Number(t)) || Number(t) < 1) throw bad('not a positive whole number');
      return Number(t);
    case 'non-negative-number':
      if (!/^\d+(\.\d+)?$/.test(t)) throw bad('not a number of 0 or more');
      return Number(t);
    case 'int': {
      const [min, max] = opts.range ?? [0, Number.MAX_SAFE_INTEGER];
      if (!/^\d+$/.test(t) || Number(t) < min || Number(t) > max) throw bad(`not a whole number from ${min} to ${max}`);
      return Number(t);
    }
    case 'bool':
      // YAML 1.1's yes/no/on/off are refused: `takeover: no` read as a string would be a surprise.
      if (t === 'true') return true;
      if (t === 'false') return false;
      throw bad('not true or false');
    case 'enum':
      if (!(opts.choices ?? []).includes(t)) throw bad(`not one of ${(opts.choices ?? []).join(', ')}`);
      return t;
    case 'string':
    case 'command':
      if (t === '') throw bad('empty');
      return text;
  }
}

const DURATION_UNITS: readonly [string, number][] = [
  ['d', 86_400_000],
  ['h', 3_600_000],
  ['m', 60_000],
  ['s', 1000],
  ['ms', 1],
];

/** A duration in ms, exactly, in the form the settings accept: 1d12h, 90s -> 1m30s, 0. */
export function formatDurationExact(ms: number): string {
  if (ms === 0) return '0';
  let rest = Math.round(ms);
  let out = '';
  for (const [unit, size] of DURATION_UNITS) {
    const n = Math.floor(rest / size);
    if (n > 0) out += `${n}${unit}`;
    rest -= n * size;
  }
  return out;
}

const SIZE_UNITS: readonly [string, number][] = [
  ['TiB', 1024 ** 4],
  ['GiB', 1024 ** 3],
  ['MiB', 1024 ** 2],
  ['KiB', 1024],
];

/** A size in bytes, exactly, in the form the settings accept: 256MiB, 1GiB, 1500B, 0. */
export function formatSizeExact(bytes: number): string {
  if (bytes === 0) return '0';
  for (const [unit, size] of SIZE_UNITS) if (bytes % size === 0) return `${bytes / size}${unit}`;
  for (const [unit, size] of [['GB', 1e9], ['MB', 1e6], ['KB', 1e3]] as const) if (bytes % size === 0) return `${bytes / size}${unit}`;
  return `${bytes}B`;
}

/** A setting's value as a person (and the parser) reads it; undefined prints as "-". */
export function formatSetting(kind: SettingKind, value: unknown): string {
  if (value === undefined) return '-';
  if (kind === 'duration') return formatDurationExact(value as number);
  if (kind === 'size') return formatSizeExact(value as number);
  if (Array.isArray(value)) return JSON.stringify(value);
  return String(value);
}
