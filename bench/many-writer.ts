/**
 * The app stand-in of the many-databases bench: one process writing into several databases, each
 * committing one small transaction (meta.k + 1 and one ~100 B event row) every --interval-ms, for
 * --duration-ms. Commits of different databases are spread over the interval, not bunched.
 *
 *   node dist/bench/many-writer.js --out FILE --interval-ms 100 --duration-ms 60000 DB...
 *
 * Prints "ready" once every database is open, starts on a line "go" on stdin, writes
 * { [db]: endUs[] } to --out (when each COMMIT returned, µs on CLOCK_MONOTONIC, comparable across
 * processes) and prints "done N".
 */
import { writeFileSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { setTimeout as sleep } from 'node:timers/promises';
import { parseArgs } from 'node:util';
import Database from 'better-sqlite3';
import { Prng, nowUs, textOf } from './app-db.js';

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    out: { type: 'string' },
    'interval-ms': { type: 'string', default: '100' },
    'duration-ms': { type: 'string', default: '60000' },
  },
});

async function main(out: string): Promise<void> {
  const intervalMs = Number(values['interval-ms']);
  const durationMs = Number(values['duration-ms']);
  const rng = new Prng(11);
  const writers = positionals.map((path) => {
    const db = new Database(path);
    db.pragma('busy_timeout = 5000');
    db.pragma('synchronous = NORMAL');
    const bump = db.prepare('UPDATE meta SET k = k + 1 WHERE id = 1');
    const ins = db.prepare('INSERT INTO events (item_id, kind, at, body) VALUES (?, ?, ?, ?)');
    const commit = db.transaction((body: string) => {
      bump.run();
      ins.run(rng.int(1000), 'note', Date.now(), body);
    });
    return { path, db, commit, endUs: [] as number[] };
  });
  process.stdout.write('ready\n');
  await new Promise<void>((resolve) => {
    const rl = createInterface({ input: process.stdin });
    rl.on('line', (l) => {
      if (l.trim() === 'go') {
        rl.close();
        resolve();
      }
    });
  });
  const start = performance.now();
  const end = start + durationMs;
  // Database i commits at start + offset_i + j * interval: paced against absolute deadlines.
  await Promise.all(
    writers.map(async (w, i) => {
      let next = start + (intervalMs * i) / writers.length;
      while (next < end) {
        const wait = next - performance.now();
        if (wait > 0) await sleep(wait);
        w.commit(textOf(rng, 100));
        w.endUs.push(nowUs());
        next += intervalMs;
      }
    }),
  );
  const log: Record<string, number[]> = {};
  for (const w of writers) {
    log[w.path] = w.endUs;
    w.db.close();
  }
  writeFileSync(out, JSON.stringify(log));
  process.stdout.write(`done ${writers.reduce((n, w) => n + w.endUs.length, 0)}\n`);
}

// Run with no arguments (e.g. by a glob over dist/), it does nothing.
if (values.out !== undefined && positionals.length > 0) await main(values.out);
