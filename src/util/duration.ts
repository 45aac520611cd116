import { PitrError } from '../errors.js';

const UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000, w: 604_800_000 };

/**
 * Parse "0", "500ms", "1s", "1.5m", "24h", "7d", "2w" or combinations like "1h30m" into milliseconds.
 * Bare numbers other than 0 are refused: "5" could mean seconds or minutes, and a backup tool must not guess.
 */
export function parseDuration(input: string, what = 'duration'): number {
  const text = input.trim().toLowerCase();
  if (text === '0') return 0;
  const re = /(\d+(?:\.\d+)?)(ms|s|m|h|d|w)/gy;
  let total = 0;
  let consumed = 0;
  for (let m = re.exec(text); m !== null; m = re.exec(text)) {
    total += Number(m[1]) * (UNITS[m[2] as string] as number);
    consumed = re.lastIndex;
  }
  if (consumed === 0 || consumed !== text.length || !Number.isFinite(total)) {
    throw new PitrError(
      'USAGE',
      `invalid ${what} "${input}"`,
      'use a number with a unit: 500ms, 1s, 5m, 24h, 7d (or 0)',
    );
  }
  return Math.round(total);
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

/**
 * Parse an RFC 3339 timestamp (fractional seconds and any offset allowed) into epoch ms.
 * Date.parse alone accepts too much ("yesterday" in some engines, dates without a zone as local time).
 */
export function parseTimestamp(input: string): number {
  const re = /^(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$/;
  const m = re.exec(input.trim());
  const ms = m ? Date.parse(input.trim().replace(' ', 'T')) : Number.NaN;
  if (!m || Number.isNaN(ms)) {
    throw new PitrError(
      'USAGE',
      `invalid timestamp "${input}"`,
      'use RFC 3339 with a zone, e.g. 2026-11-22T10:15:00.250Z or 2026-11-22T11:15:00+01:00',
    );
  }
  // Date.parse keeps milliseconds only; finer fractions cannot matter since commit times are ms.
  return ms;
}

const SIZE_UNITS: Record<string, number> = { b: 1, k: 1e3, kb: 1e3, kib: 1024, m: 1e6, mb: 1e6, mib: 1024 ** 2, g: 1e9, gb: 1e9, gib: 1024 ** 3, t: 1e12, tb: 1e12, tib: 1024 ** 4 };

/** Parse "0", "512MiB", "1GiB", "500MB", "64k" into bytes (binary units when the i is there). */
export function parseSize(input: string, what = 'size'): number {
  const m = /^(\d+(?:\.\d+)?)\s*([a-z]*)$/i.exec(input.trim());
  const unit = m ? (m[2] ?? '').toLowerCase() : '';
  const factor = unit === '' ? (Number(m?.[1]) === 0 ? 1 : undefined) : SIZE_UNITS[unit];
  if (!m || factor === undefined) {
    throw new PitrError('USAGE', `invalid ${what} "${input}"`, 'use a number with a unit: 64MiB, 1GiB, 500MB (or 0)');
  }
  return Math.round(Number(m[1]) * factor);
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
