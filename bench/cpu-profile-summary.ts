/**
 * Where a V8 CPU profile (`node --cpu-prof`) spent its time, optionally only between two moments
 * (µs on CLOCK_MONOTONIC, as bench/app-db.ts nowUs() and the many bench's phase log print them):
 *
 *   node dist/bench/cpu-profile-summary.js FILE.cpuprofile [FROM_US TO_US]
 *
 * Prints self time by function (name, file:line) and by file, largest first.
 */
import { readFileSync } from 'node:fs';

interface Node {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  children?: number[];
}
interface Profile {
  nodes: Node[];
  startTime: number;
  samples: number[];
  timeDeltas: number[];
}

function summarize(file: string, from: number, to: number): string {
  const p = JSON.parse(readFileSync(file, 'utf8')) as Profile;
  const byId = new Map(p.nodes.map((n) => [n.id, n]));
  const parent = new Map<number, number>();
  for (const n of p.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  // The innermost pitr frame (dist/src) on the stack, outermost first when none is inside pitr.
  const pitrFrame = (id: number): string => {
    for (let cur: number | undefined = id; cur !== undefined; cur = parent.get(cur)) {
      const f = byId.get(cur)!.callFrame;
      if (f.url.includes('/dist/src/')) return `${f.functionName || '(anonymous)'} ${f.url.replace(/^file:\/\/.*?\/dist\//, 'dist/')}:${f.lineNumber + 1}`;
    }
    return '(no pitr frame: event loop, GC, I/O callbacks)';
  };
  const byPitr = new Map<string, number>();
  const self = new Map<string, number>();
  const byFile = new Map<string, number>();
  let t = p.startTime;
  let total = 0;
  let idle = 0;
  p.samples.forEach((id, i) => {
    const dt = p.timeDeltas[i + 1] ?? 0;
    t += p.timeDeltas[i] ?? 0;
    if (t < from || t > to) return;
    const n = byId.get(id)!;
    const f = n.callFrame;
    if (f.functionName === '(idle)') {
      idle += dt;
      return;
    }
    total += dt;
    const pf = pitrFrame(id);
    byPitr.set(pf, (byPitr.get(pf) ?? 0) + dt);
    const where = f.url === '' ? '' : ` ${f.url.replace(/^file:\/\/.*?\/(dist|node_modules)\//, '$1/')}:${f.lineNumber + 1}`;
    const key = `${f.functionName || '(anonymous)'}${where}`;
    self.set(key, (self.get(key) ?? 0) + dt);
    const fileKey = f.url === '' ? f.functionName : f.url.replace(/^file:\/\/.*?\/(dist|node_modules)\//, '$1/');
    byFile.set(fileKey, (byFile.get(fileKey) ?? 0) + dt);
  });
  const top = (m: Map<string, number>, k: number): string =>
    [...m].sort((a, b) => b[1] - a[1]).slice(0, k).map(([name, us]) => `${(us / 1000).toFixed(1).padStart(9)} ms ${((us / total) * 100).toFixed(1).padStart(5)}%  ${name}`).join('\n');
  const span = Math.min(to, t) - Math.max(from, p.startTime);
  return [
    `busy ${(total / 1000).toFixed(0)} ms of ${(span / 1000).toFixed(0)} ms sampled (idle ${(idle / 1000).toFixed(0)} ms)`,
    'self time by function:',
    top(self, 30),
    'self time by file:',
    top(byFile, 20),
    'time by the innermost pitr function on the stack:',
    top(byPitr, 20),
  ].join('\n');
}

const [file, from, to] = process.argv.slice(2);
if (file) process.stdout.write(`${summarize(file, Number(from ?? -Infinity), Number(to ?? Infinity))}\n`);
