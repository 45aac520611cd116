import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { cpus, totalmem } from 'node:os';
import type { BenchRow } from './bench-row.js';
import { benchWal } from './wal-bench.js';
import { benchSegment } from './segment-bench.js';
import { benchLag } from './lag-bench.js';
import { benchOverhead } from './overhead-bench.js';
import { benchRestore } from './restore-bench.js';
import { benchIdle } from './idle-bench.js';
import { benchMany } from './many-bench.js';

/**
 * `npm run bench`: hot-path benchmarks (WAL, segments) and the real agent end to end (lag, app overhead,
 * agent cost, idle cost, restore, the cron baseline). Prints a table and writes bench/results/<time>.json.
 * Every row says how it was measured; ratios are against baselines measured in the same run.
 */
async function main(): Promise<void> {
  const only = process.argv[2];
  // [name, run, background]: a background suite measures only its own processes (idle agents),
  // so when everything runs it starts first and runs alongside the others, keeping the whole
  // bench under 5 minutes. It is given a callback for the end of its setup (the only part that
  // uses CPU), and the other suites start only then, so they do not share the machine with it.
  const suites: [string, (ready: () => void) => Promise<BenchRow[]>, boolean][] = [
    ['wal', benchWal, false],
    ['segment', benchSegment, false],
    ['lag', benchLag, false],
    ['overhead', benchOverhead, false],
    ['restore', benchRestore, false],
    ['idle', benchIdle, true],
  ];
  // Run only when named (`node dist/bench/run.js many`): its 1,000 databases take 10+ minutes.
  const named: [string, () => Promise<BenchRow[]>][] = [['many', benchMany]];
  const one = named.find(([name]) => name === only);
  if (one) suites.splice(0, suites.length, [one[0], one[1], false]);
  if (only && !suites.some(([name]) => name === only)) throw new Error(`unknown suite ${only}; suites: ${[...suites, ...named].map(([n]) => n).join(', ')}`);
  const started = performance.now();
  const ready: Promise<void>[] = [];
  const background = suites
    .filter(([name, , bg]) => bg && (!only || only === name))
    .map(([name, run]) => {
      process.stderr.write(`starting ${name} benchmarks in the background...\n`);
      let done!: () => void;
      ready.push(new Promise<void>((r) => (done = r)));
      const rows = run(done);
      rows.catch(done);
      return rows;
    });
  await Promise.all(ready);
  const rows: BenchRow[] = [];
  for (const [name, run, bg] of suites) {
    if (bg || (only && only !== name)) continue;
    process.stderr.write(`running ${name} benchmarks... (${((performance.now() - started) / 1000).toFixed(0)} s)\n`);
    rows.push(...(await run(() => {})));
  }
  for (const b of background) rows.push(...(await b));
  process.stderr.write(`all done in ${((performance.now() - started) / 1000).toFixed(0)} s\n`);
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
