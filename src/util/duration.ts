import { PitrError } from '../errors.js';

/**
 * Duration units, case-sensitive. A month and a year are fixed lengths, the longest a calendar
 * one can be: `--retention 1mo` then always keeps at least a calendar month back, whatever the
 * month (a backup tool must not keep less than the user asked for).
 */
const UNITS: Record<string, number> = {
  ms: 1,
  s: 1000,
  m: 60_000,
  h: 3_600_000,
  d: 86_400_000,
  w: 7 * 86_400_000,
  mo: 31 * 86_400_000,
  y: 366 * 86_400_000,
};
const UNIT_LIST = 'ms, s, m (minutes), h, d, w, mo (31 days), y (366 days)';

/**
 * Parse "0", "500ms", "1s", "1.5m", "24h", "7d", "2w", "3mo", "1y" or combinations like "1h30m"
 * into milliseconds. Units are case-sensitive; "M" is refused (minutes or months?), and so are
 * bare numbers other than 0 ("5": seconds or minutes?): a backup tool must not guess, since a
 * misread --retention deletes history.
 */
export function parseDuration(input: string, what = 'duration'): number {
  const text = input.trim();
  if (text === '0') return 0;
  const re = /(\d+(?:\.\d+)?)([A-Za-z]+)/y;
  let total = 0;
  let consumed = 0;
  for (let m = re.exec(text); m !== null; m = re.exec(text)) {
    const [, amount = '', unit = ''] = m;
    const factor = UNITS[unit];
    if (factor === undefined) throw badUnit(input, what, amount, unit);
    total += Number(amount) * factor;
    consumed = re.lastIndex;
  }
  if (consumed === 0 || consumed !== text.length || !Number.isFinite(total) || total > Number.MAX_SAFE_INTEGER) {
    const bare = /^\d+(\.\d+)?$/.test(text);
    throw new PitrError(
      'BAD_DURATION',
      `invalid ${what} "${input}": ${bare ? 'a number needs a unit' : 'not a duration'}`,
      `use a number with a unit, e.g. 500ms, 30s, 5m, 24h, 7d, 2w, 3mo, 1y, 1h30m (or 0); units: ${UNIT_LIST}`,
    );
  }
  return Math.round(total);
}

function badUnit(input: string, what: string, amount: string, unit: string): PitrError {
  if (unit === 'M') {
    return new PitrError(
      'BAD_DURATION',
      `invalid ${what} "${input}": "M" could mean minutes or months`,
      `write ${amount}m for minutes or ${amount}mo for months; units are case-sensitive: ${UNIT_LIST}`,
    );
  }
  const lower = unit.toLowerCase();
  if (UNITS[lower] !== undefined) {
    return new PitrError(
      'BAD_DURATION',
      `invalid ${what} "${input}": "${unit}" is not a unit (units are case-sensitive)`,
      `did you mean ${amount}${lower}? units: ${UNIT_LIST}`,
    );
  }
  return new PitrError('BAD_DURATION', `invalid ${what} "${input}": "${unit}" is not a unit`, `units: ${UNIT_LIST}; e.g. 5m, 24h, 7d, 3mo`);
}

/** Short human form of a duration in ms: 850ms, 12.3s, 4m10s, 3h5m, 2d4h. */
export function formatDuration(ms: number): string {
  if (ms < 1000) return `${Math.round(ms)}ms`;
  if (ms < 60_000) return `${(ms / 1000).toFixed(1).replace(/\.0$/, '')}s`;
  const s = Math.floor(ms / 1000);
  if (s < 3600) return `${Math.floor(s / 60)}m${s % 60 ? `${s % 60}s` : ''}`;
  if (s < 86_400) return `${Math.floor(s / 3600)}h${Math.floor((s % 3600) / 60) ? `${Math.floor((s % 3600) / 60)}m` : ''}`;
  return `${Math.floor(s / 86_400)}d${Math.floor((s % 86_400) / 3600) ? `${Math.floor((s % 86_400) / 3600)}h` : ''}`;
}

const TIMESTAMP_HINT = 'use RFC 3339 with a zone, e.g. 2026-11-22T10:15:00.250Z or 2026-11-22T11:15:00+01:00';

/**
 * Parse an RFC 3339 timestamp (fractional seconds and any offset allowed) into epoch ms.
 * Date.parse alone accepts too much ("yesterday" in some engines, dates without a zone as local
 * time) and rolls impossible dates over (2026-02-30 becomes March 2): each field is checked here.
 */
export function parseTimestamp(input: string, what = 'timestamp'): number {
  const text = input.trim();
  const re = /^(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(\.\d+)?([Zz]|([+-])(\d{2}):(\d{2}))$/;
  const m = re.exec(text);
  if (!m) throw new PitrError('BAD_TIME', `invalid ${what} "${input}": not an RFC 3339 time with a zone`, TIMESTAMP_HINT);
  const [year, month, day, hour, minute, second] = m.slice(1, 7).map(Number) as [number, number, number, number, number, number];
  const impossible = (why: string): PitrError => new PitrError('BAD_TIME', `invalid ${what} "${input}": ${why}`, TIMESTAMP_HINT);
  if (month < 1 || month > 12) throw impossible(`there is no month ${m[2]}`);
  const days = daysInMonth(year, month);
  if (day < 1 || day > days) throw impossible(`${MONTHS[month - 1]} ${year} has ${days} days, not ${day}`);
  if (hour > 23) throw impossible(`hour ${m[4]} is past 23`);
  if (minute > 59) throw impossible(`minute ${m[5]} is past 59`);
  // RFC 3339 allows :60 for a leap second; commit times come from a clock that never shows one.
  if (second > 59) throw impossible(`second ${m[6]} is past 59`);
  if (m[9] !== undefined && (Number(m[10]) > 23 || Number(m[11]) > 59)) throw impossible(`offset ${m[8]} is not a time zone offset`);
  const ms = Date.parse(text.replace(' ', 'T'));
  if (Number.isNaN(ms)) throw new PitrError('BAD_TIME', `invalid ${what} "${input}"`, TIMESTAMP_HINT);
  // Date.parse keeps milliseconds only; finer fractions cannot matter since commit times are ms.
  return ms;
}

const MONTHS = ['January', 'February', 'March', 'April', 'May', 'June', 'July', 'August', 'September', 'October', 'November', 'December'];

function daysInMonth(year: number, month: number): number {
  if (month === 2) return (year % 4 === 0 && year % 100 !== 0) || year % 400 === 0 ? 29 : 28;
  return [4, 6, 9, 11].includes(month) ? 30 : 31;
}

/** Size units, case-sensitive: decimal (kB/KB, MB, ...) and binary (KiB, MiB, ...), never guessed. */
const SIZE_UNITS: Record<string, number> = {
  B: 1,
  kB: 1e3,
  KB: 1e3,
  KiB: 1024,
  MB: 1e6,
  MiB: 1024 ** 2,
  GB: 1e9,
  GiB: 1024 ** 3,
  TB: 1e12,
  TiB: 1024 ** 4,
};
const SIZE_LIST = 'B, KB/KiB, MB/MiB, GB/GiB, TB/TiB (KiB = 1024 B, KB = 1000 B)';

/**
 * Parse "0", "512MiB", "1GiB", "500MB", "64KiB" into bytes. Units are case-sensitive; a bare
 * letter ("64M", "1g") is refused, since tools disagree on whether it means MB or MiB.
 */
export function parseSize(input: string, what = 'size'): number {
  const m = /^(\d+(?:\.\d+)?)\s*([A-Za-z]*)$/.exec(input.trim());
  if (!m) {
    throw new PitrError('BAD_SIZE', `invalid ${what} "${input}": not a size`, `use a number with a unit, e.g. 64MiB, 1GiB, 500MB (or 0); units: ${SIZE_LIST}`);
  }
  const [, amount = '', unit = ''] = m;
  if (unit === '') {
    if (Number(amount) === 0) return 0;
    throw new PitrError('BAD_SIZE', `invalid ${what} "${input}": a number needs a unit`, `e.g. ${amount}MiB or ${amount}KiB; units: ${SIZE_LIST}`);
  }
  const factor = SIZE_UNITS[unit];
  if (factor === undefined) throw badSizeUnit(input, what, amount, unit);
  const bytes = Math.round(Number(amount) * factor);
  if (!Number.isSafeInteger(bytes)) {
    throw new PitrError('BAD_SIZE', `invalid ${what} "${input}": too large`, `units: ${SIZE_LIST}`);
  }
  return bytes;
}

function badSizeUnit(input: string, what: string, amount: string, unit: string): PitrError {
  if (/^[KkMmGgTt]$/.test(unit)) {
    const u = unit.toUpperCase();
    return new PitrError(
      'BAD_SIZE',
      `invalid ${what} "${input}": "${unit}" could mean ${u}B or ${u}iB`,
      `write ${amount}${u}iB (binary, powers of 1024) or ${amount}${u}B (decimal, powers of 1000); units are case-sensitive: ${SIZE_LIST}`,
    );
  }
  const same = Object.keys(SIZE_UNITS).find((u) => u.toLowerCase() === unit.toLowerCase());
  if (same !== undefined) {
    return new PitrError(
      'BAD_SIZE',
      `invalid ${what} "${input}": "${unit}" is not a unit (units are case-sensitive)`,
      `did you mean ${amount}${same}? units: ${SIZE_LIST}`,
    );
  }
  return new PitrError('BAD_SIZE', `invalid ${what} "${input}": "${unit}" is not a unit`, `units: ${SIZE_LIST}; e.g. 64MiB, 1GiB`);
}

/** A byte count for people: 1536 -> "1.5 KiB". */
export function formatBytes(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let v = n;
  let u = 0;
  while (v >= 1024 && u < units.length - 1) {
    v /= 1024;
    u++;
  }
  return `${u === 0 ? v : v.toFixed(1)} ${units[u]}`;
}
