/**
 * The many-databases bench's own table: one row per (N, phase), units in the column names, and
 * per-database CPU and RSS as a ratio against N=10 measured in the same run (N single-database
 * agents would be the natural baseline, but 1,000 agents cost more than the machine has).
 */

export interface ManyRow {
  n: number;
  phase: 'start-up' | 'idle' | 'writing';
  replica: string;
  /** Start-up: time until every replica held its first snapshot; else the measured window. */
  seconds: number;
  cpuPct: number;
  rssMB: number;
  fds: number;
  /** Requests per minute by method (LIST is a GET with list-type); undefined for a file replica. */
  perMin?: Record<string, number>;
  lagP50Ms?: number;
  lagP99Ms?: number;
  lagSamples?: number;
}

export const METHODS = ['PUT', 'GET', 'LIST', 'DELETE', 'HEAD', 'POST'] as const;

export function renderManyTable(rows: readonly ManyRow[]): string {
  const base = (r: ManyRow): ManyRow | undefined => rows.find((b) => b.n === 10 && b.phase === r.phase);
  const cols: [string, (r: ManyRow) => string][] = [
    ['N dbs', (r) => String(r.n)],
    ['phase', (r) => r.phase],
    ['replica', (r) => r.replica],
    ['time s', (r) => r.seconds.toFixed(1)],
    ['CPU %core', (r) => r.cpuPct.toFixed(2)],
    ['CPU/db %core', (r) => (r.cpuPct / r.n).toFixed(4)],
    ['CPU/db vs N=10 x', (r) => ratio(r.cpuPct / r.n, base(r), (b) => b.cpuPct / b.n)],
    ['RSS MB', (r) => r.rssMB.toFixed(0)],
    ['RSS/db MB', (r) => (r.rssMB / r.n).toFixed(2)],
    ['RSS/db vs N=10 x', (r) => ratio(r.rssMB / r.n, base(r), (b) => b.rssMB / b.n)],
    ['fds', (r) => String(r.fds)],
    ...METHODS.map((m): [string, (r: ManyRow) => string] => [`${m}/min`, (r) => (r.perMin ? r.perMin[m]!.toFixed(1) : '-')]),
    ['req/min', (r) => (r.perMin ? Object.values(r.perMin).reduce((a, b) => a + b, 0).toFixed(1) : '-')],
    ['lag p50 ms', (r) => (r.lagP50Ms === undefined ? '-' : r.lagP50Ms.toFixed(0))],
    ['lag p99 ms', (r) => (r.lagP99Ms === undefined ? '-' : r.lagP99Ms.toFixed(0))],
    ['lag n', (r) => (r.lagSamples === undefined ? '-' : String(r.lagSamples))],
  ];
  const cells = rows.map((r) => cols.map(([, f]) => f(r)));
  const widths = cols.map(([h], i) => Math.max(h.length, ...cells.map((c) => c[i]!.length)));
  const line = (c: string[]): string => `| ${c.map((s, i) => (i < 3 ? s.padEnd(widths[i]!) : s.padStart(widths[i]!))).join(' | ')} |`;
  return [line(cols.map(([h]) => h)), `|${widths.map((w, i) => (i < 3 ? ` ${'-'.repeat(w)} ` : ` ${'-'.repeat(w - 1)}: `)).join('|')}|`, ...cells.map(line)].join('\n');
}

function ratio(v: number, b: ManyRow | undefined, of: (b: ManyRow) => number): string {
  if (b === undefined) return '-';
  const d = of(b);
  return d > 0 ? (v / d).toFixed(3) : '-';
}
