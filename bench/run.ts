import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { cpus, totalmem } from 'node:os';
import type { BenchRow } from './bench-row.js';
import { benchWal } from './wal-bench.js';
import { benchSegment } from './segment-bench.js';
import { benchLag } from './lag-bench.js';

/**
 * `npm run bench`: hot-path benchmarks. Prints a table and writes bench/results/<time>.json.
 * Every row says how it was measured; ratios are against baselines measured in the same run.
 */
async function main(): Promise<void> {
  const only = process.argv[2];
  const suites: [string, () => Promise<BenchRow[]>][] = [
    ['wal', benchWal],
    ['segment', benchSegment],
    ['lag', benchLag],
  ];
  const rows: BenchRow[] = [];
  for (const [name, run] of suites) {
    if (only && only !== name) continue;
    process.stderr.write(`running ${name} benchmarks...\n`);
    rows.push(...(await run()));
  }
  const nameW = Math.max(4, ...rows.map((r) => r.name.length));
  const valW = Math.max(5, ...rows.map((r) => fmt(r.value).length));
  process.stdout.write(`${'row'.padEnd(nameW)}  ${'value'.padStart(valW)}  unit      how\n`);
  for (const r of rows) {
    process.stdout.write(`${r.name.padEnd(nameW)}  ${fmt(r.value).padStart(valW)}  ${r.unit.padEnd(8)}  ${r.how}\n`);
  }
  const dir = new URL('../../bench/results/', import.meta.url).pathname;
  mkdirSync(dir, { recursive: true });
  const file = join(dir, `${new Date().toISOString().replace(/[:.]/g, '-')}.json`);
  writeFileSync(
    file,
    JSON.stringify({ when: new Date().toISOString(), node: process.version, cpus: cpus().length, cpuModel: cpus()[0]?.model, memoryBytes: totalmem(), rows }, null, 2),
  );
  process.stdout.write(`\nresults written to ${file}\n`);
}

function fmt(v: number): string {
  return Math.abs(v) >= 100 ? v.toFixed(0) : v.toFixed(2);
}

await main();
