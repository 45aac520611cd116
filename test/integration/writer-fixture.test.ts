/**
 * The round trip is only as strong as the application it plays. This pins what the writer must
 * keep doing: log a digest that describes the database, stay deterministic per seed, and exercise
 * the hard cases (every checkpoint mode, VACUUM that shrinks the file, spilling transactions).
 * No pitr process involved.
 */
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import Database from 'better-sqlite3';
import { openAppDatabase, readSeq } from '../fixtures/app-schema.js';
import { digestDatabase } from '../fixtures/digest.js';
import { CHECKPOINT_MODES, readWriterLog, type WriterLog } from '../fixtures/writer-log.js';
import { describeRun, makeTempDir, removeTempDir, startWriter, type RunResult } from './helpers.js';

const COUNT = 160;

describe('writer fixture', { timeout: 5 * 60_000 }, () => {
  let tmp = '';
  const runs: { db: string; result: RunResult; log: WriterLog }[] = [];

  before(async () => {
    tmp = await makeTempDir('pitr-writer-');
    // Two databases, same seed, written concurrently: same content is expected commit by commit.
    const started = ['a', 'b'].map((name) => {
      const db = join(tmp, `${name}.db`);
      openAppDatabase(db).close();
      const log = join(tmp, `${name}.jsonl`);
      return { db, log, spawned: startWriter({ db, log, count: COUNT, seed: 42 }) };
    });
    for (const s of started) runs.push({ db: s.db, result: await s.spawned.result, log: await readWriterLog(s.log) });
  });

  after(async () => {
    if (tmp !== '') await removeTempDir(tmp);
  });

  it('exits 0 and prints done <k>', () => {
    for (const r of runs) {
      assert.equal(r.result.code, 0, describeRun(r.result));
      assert.match(r.result.stdout, new RegExp(`^done ${COUNT}$`, 'm'));
    }
  });

  it('logs one digest per seq, and the last one is the database on disk', () => {
    const [run] = runs;
    assert.ok(run !== undefined);
    assert.deepEqual([...run.log.commits.keys()].sort((a, b) => a - b), Array.from({ length: COUNT + 1 }, (_, i) => i));
    const db = new Database(run.db, { readonly: true });
    try {
      assert.equal(readSeq(db), COUNT);
      assert.equal(digestDatabase(db), run.log.commits.get(COUNT)?.digest);
      assert.equal(db.pragma('integrity_check', { simple: true }), 'ok');
    } finally {
      db.close();
    }
    // Every commit changes meta.seq, so no two commits may share a digest.
    assert.equal(new Set([...run.log.commits.values()].map((c) => c.digest)).size, COUNT + 1);
  });

  it('is deterministic for a seed', () => {
    const [a, b] = runs;
    assert.ok(a !== undefined && b !== undefined);
    for (let k = 0; k <= COUNT; k++) assert.equal(a.log.commits.get(k)?.digest, b.log.commits.get(k)?.digest, `seq ${k}`);
  });

  it('exercises every checkpoint mode, VACUUM that shrinks the file, and spilling transactions', () => {
    const [run] = runs;
    assert.ok(run !== undefined);
    const modes = new Set(run.log.events.filter((e) => e.event === 'checkpoint').map((e) => e['mode']));
    for (const mode of CHECKPOINT_MODES) assert.ok(modes.has(mode), `no ${mode} checkpoint`);
    const vacuums = run.log.events.filter((e) => e.event === 'vacuum');
    assert.ok(
      vacuums.some((e) => (e['pagesAfter'] as number) < (e['pagesBefore'] as number)),
      'no VACUUM shrank the database',
    );
    const ops = new Set([...run.log.commits.values()].map((c) => c.op));
    for (const op of ['bigBatch', 'bigBlob', 'index', 'massDelete']) assert.ok(ops.has(op), `no ${op} transaction`);
  });
});
