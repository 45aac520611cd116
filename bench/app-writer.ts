/**
 * The application stand-in for the agent benchmarks: a separate process (like a real app) that
 * commits transactions into a database seeded by bench/app-db.ts and records, for every commit,
 * its number k and the monotonic time at which COMMIT returned. k is also written into the
 * database (meta.k), so a restore at txid S+k can be checked against it.
 *
 *   node dist/bench/app-writer.js --db PATH --out FILE --mode sparse|rate|max|bulk [options]
 *     sparse: --count N, one commit every --min-gap-ms..--max-gap-ms (uniform)
 *     rate:   --rate R commits/s for --duration-ms, paced against absolute deadlines
 *     max:    as fast as possible for --duration-ms
 *     bulk:   --count N transactions of --rows R rows of ~--row-bytes B text each, at --rate R tx/s (0 = unpaced)
 *     rate and paced bulk: --pause-every K --pause-ms M inserts a quiet moment every K commits
 *
 * Prints "ready" once the database is open, starts on a line "go" on stdin, writes the commit log
 * to --out as JSON ({ k, endUs, latUs }: arrays; endUs = process.hrtime in µs, CLOCK_MONOTONIC,
 * comparable across processes) and prints "done N".
 */
import { writeFileSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { setTimeout as sleep } from 'node:timers/promises';
import { parseArgs } from 'node:util';
import Database from 'better-sqlite3';
import { Prng, nowUs, textOf } from './app-db.js';

const { values } = parseArgs({
  options: {
    db: { type: 'string' },
    out: { type: 'string' },
    mode: { type: 'string' },
    count: { type: 'string', default: '0' },
    rate: { type: 'string', default: '0' },
    'duration-ms': { type: 'string', default: '0' },
    'min-gap-ms': { type: 'string', default: '1000' },
    'max-gap-ms': { type: 'string', default: '2000' },
    rows: { type: 'string', default: '100' },
    'row-bytes': { type: 'string', default: '1000' },
    seed: { type: 'string', default: '7' },
    synchronous: { type: 'string', default: 'NORMAL' },
    'pause-every': { type: 'string', default: '0' },
    'pause-ms': { type: 'string', default: '0' },
  },
  strict: true,
});
const num = (k: keyof typeof values): number => Number(values[k]);
if (!values.db || !values.out || !values.mode) throw new Error('app-writer: --db, --out and --mode are required');
const mode = values.mode;

const db = new Database(values.db);
db.pragma('journal_mode = WAL');
db.pragma(`synchronous = ${values.synchronous}`);
db.pragma('busy_timeout = 5000');
const rng = new Prng(num('seed'));
const itemCount = db.prepare('SELECT max(id) FROM items').pluck().get() as number;
const setK = db.prepare('UPDATE meta SET k = ? WHERE id = 1');
const updItem = db.prepare('UPDATE items SET status = ?, amount = ?, note = ?, updated = ? WHERE id = ?');
const insEvent = db.prepare('INSERT INTO events (item_id, kind, at, body) VALUES (?, ?, ?, ?)');
const insDoc = db.prepare('INSERT INTO docs (k, body) VALUES (?, ?)');
const STATUS = ['pending', 'paid', 'shipped', 'refunded', 'active', 'closed'];

/** One small OLTP transaction: update a random item, append an event, bump meta.k. */
const oltp = db.transaction((k: number) => {
  const id = 1 + rng.int(itemCount);
  updItem.run(STATUS[rng.int(STATUS.length)], rng.int(1_000_000), textOf(rng, 120), Date.now(), id);
  insEvent.run(id, STATUS[rng.int(STATUS.length)], Date.now(), textOf(rng, 80));
  setK.run(k);
});
const rowsPerTx = num('rows');
const rowBytes = num('row-bytes');
/** One bulk transaction: rowsPerTx documents of ~rowBytes of text, bump meta.k. */
const bulk = db.transaction((k: number) => {
  for (let i = 0; i < rowsPerTx; i++) insDoc.run(`doc-${k}-${i}-${rng.int(1e9)}`, textOf(rng, rowBytes));
  setK.run(k);
});
const commitOne = mode === 'bulk' ? bulk : oltp;

let cap = 1024;
let ks = new Float64Array(cap);
let ends = new Float64Array(cap);
let lats = new Float64Array(cap);
let n = 0;
function commit(k: number): void {
  const t0 = nowUs();
  commitOne(k);
  const t1 = nowUs();
  if (n === cap) {
    cap *= 2;
    const grow = (a: Float64Array<ArrayBuffer>): Float64Array<ArrayBuffer> => {
      const b = new Float64Array(cap);
      b.set(a);
      return b;
    };
    ks = grow(ks);
    ends = grow(ends);
    lats = grow(lats);
  }
  ks[n] = k;
  ends[n] = t1;
  lats[n] = t1 - t0;
  n++;
}

async function run(): Promise<void> {
  if (mode === 'sparse') {
    const count = num('count');
    const lo = num('min-gap-ms');
    const hi = num('max-gap-ms');
    // A gap before every commit, the first included: each one follows a quiet period, as in a
    // sparse app (and not the agent's startup upload, which the sync interval spaces from).
    for (let k = 1; k <= count; k++) {
      await sleep(lo + rng.next() * (hi - lo));
      commit(k);
    }
  } else if (mode === 'rate' || (mode === 'bulk' && num('rate') > 0)) {
    const rate = num('rate');
    const periodUs = 1e6 / rate;
    const count = mode === 'bulk' ? num('count') : Math.round((num('duration-ms') / 1000) * rate);
    const pauseEvery = num('pause-every');
    const pauseMs = num('pause-ms');
    let start = nowUs();
    let k = 1;
    while (k <= count) {
      const due = start + (k - 1) * periodUs;
      const now = nowUs();
      if (now >= due) {
        commit(k++);
        if (pauseEvery > 0 && (k - 1) % pauseEvery === 0 && k <= count) {
          // A quiet moment, as bursty apps have; the schedule resumes after it.
          await sleep(pauseMs);
          start += pauseMs * 1000;
        }
        continue;
      }
      // Timers have ~1 ms granularity: wake a little early and commit what is due.
      await sleep(Math.max(0, (due - now) / 1000 - 0.5));
    }
  } else if (mode === 'max') {
    const end = nowUs() + num('duration-ms') * 1000;
    let k = 1;
    while (nowUs() < end) commit(k++);
  } else if (mode === 'bulk') {
    const count = num('count');
    for (let k = 1; k <= count; k++) commit(k);
  } else {
    throw new Error(`app-writer: unknown --mode ${mode}`);
  }
}

process.stdout.write('ready\n');
const rl = createInterface({ input: process.stdin });
for await (const line of rl) {
  if (line.trim() === 'go') break;
}
rl.close();
await run();
db.close();
writeFileSync(values.out, JSON.stringify({ k: Array.from(ks.subarray(0, n)), endUs: Array.from(ends.subarray(0, n)), latUs: Array.from(lats.subarray(0, n)) }));
process.stdout.write(`done ${n}\n`);
