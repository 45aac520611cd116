// temporary experiment (deleted before hand-off)
import { statSync } from 'node:fs';
import { join } from 'node:path';
import { makeSeed, copyDb } from './lag-bench.js';
import { startAgent, startWriter, tempDir } from './agent-harness.js';
const dir = tempDir('exp');
const seed = makeSeed(dir);
const db = copyDb(seed.path, join(dir, 'x'));
const extra = process.argv.slice(2);
const agent = startAgent([db, join(dir, 'x', 'replica'), '--state-dir', join(dir, 'x', 'state'), ...extra]);
await new Promise((r) => setTimeout(r, 2000));
const w = startWriter(['--db', db, '--mode', 'rate', '--rate', process.env['RATE'] ?? '1000', '--duration-ms', '10000'], join(dir, 'c.json'));
await w.ready; w.go();
let max = 0; const samples: number[] = [];
const t = setInterval(() => { try { const s = statSync(db + '-wal').size; samples.push(s); max = Math.max(max, s); } catch {} }, 250);
const log = await w.done;
clearInterval(t);
await new Promise((r) => setTimeout(r, 1000));
await agent.stop();
console.log('commits', log.k.length, 'max wal MB', (max / 1e6).toFixed(1), samples.filter((_, i) => i % 4 === 0).map((s) => (s / 1e6).toFixed(1)).join(' '));
const all = agent.stderr().split("\n"); const lines = all.filter((l) => /"level":"(error|warn)"|new generation/.test(l)); const msgs = new Map<string, number>(); for (const l of lines) { const m = /"msg":"([^"]*)"/.exec(l)?.[1] ?? l; msgs.set(m, (msgs.get(m) ?? 0) + 1); } console.log(msgs);

console.log(dir);
