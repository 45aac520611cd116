/**
 * What pitr proves about a replica, tried as a user would (issue 18, "Completeness"): objects
 * deleted or damaged by hand in a replica a real agent wrote, to a directory and to S3 (s3rver).
 * A restore that cannot give the state asked for must fail (exit 1, the error code in the message,
 * nothing at OUT, nothing in the replica changed) and say what is missing and what is restorable;
 * verify must fail naming the hole, orphan or missing base; status --max-age must exit 2; list
 * must show it. And the reverse: one damaged or stray object must not block what intact objects
 * can serve.
 *
 * One agent run writes generation G1 (a few commits), a second one (fresh state dir) generation
 * G2 while the writer fixture plays the app: many segments. Meanwhile restore and status run
 * against the live replicas and must never call them incomplete (the marker is read before the
 * LIST). Every scenario works on its own copy of that replica.
 */
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { cpSync, existsSync, mkdirSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { openAppDatabase, appCommit } from '../fixtures/app-schema.js';
import { startS3Server, type S3TestServer } from '../storage/s3-server.js';
import { S3Storage } from '../../src/storage/s3/s3-storage.js';
import { parseObjectKey, segmentKey, snapshotKey } from '../../src/segment/object-names.js';
import {
  describeRun,
  expectCliError,
  inspectDatabase,
  listFilesRecursive,
  makeTempDir,
  parseCliError,
  removeTempDir,
  runCli,
  runCliJson,
  startAgent,
  startWriter,
  waitUntil,
  type Agent,
  type ListOutput,
  type RestoreOutput,
  type RunResult,
} from './helpers.js';

const FOREIGN_GEN = 'ffffffffffff0000';

interface Hole {
  kind: 'gap' | 'tail';
  firstTxid: number;
  lastTxid: number;
  onlyDamaged: boolean;
}
interface ListJson {
  replica: string;
  latest: { generation: string; txid: number; restorable: boolean } | null;
  generations: {
    id: string;
    segments: number;
    snapshots: number;
    firstTxid: number | null;
    lastTxid: number | null;
    newestTxid: number;
    provenTxid: number | null;
    complete: boolean;
    holes: Hole[];
    missingBase: { firstTxid: number; lastTxid: number } | null;
    orphans: { key: string; firstTxid: number; lastTxid: number }[];
    damaged: { key: string; reason: string }[];
  }[];
}
interface StatusJson {
  restorable: boolean;
  proven: boolean;
  generation: string | null;
  txid: number | null;
  problems: string[];
  check?: { status: string };
}
interface VerifyJson {
  ok: boolean;
  integrity: string;
  txid: number;
  problems: { check: string; code: string; message: string; object?: string }[];
}
type RestoreJson = RestoreOutput & { skipped: { key: string; reason: string }[]; skippedGenerations: string[] };

/** One way of damaging a replica, by keys. */
interface Damage {
  remove?: string[];
  empty?: string[];
  garbage?: string[];
}

interface SegmentKey {
  key: string;
  firstTxid: number;
  lastTxid: number;
  firstTime: number;
  lastTime: number;
}

describe('completeness: pitr never answers with less than it was asked for, and is not stopped by one bad object', () => {
  let tmp: string;
  let server: S3TestServer | undefined;
  let env: Record<string, string>;
  let fileReplica: string;
  let liveS3: string;
  let g1: string;
  let gen2: string;
  /** Generation 2's objects in each replica. */
  const g2: Record<'file' | 's3', { segments: SegmentKey[]; snapshot: string }> = { file: { segments: [], snapshot: '' }, s3: { segments: [], snapshot: '' } };
  let g1Last: number;
  let g2Newest: number;
  /** While the agent wrote G2: every restore and status run against the live replicas. */
  const live: RunResult[] = [];
  let scenarios = 0;

  const cli = (args: string[]): Promise<RunResult> => runCli(args, { env });

  function s3Client(prefix: string): S3Storage {
    const srv = server as S3TestServer;
    return new S3Storage({ bucket: srv.bucket, prefix, endpoint: srv.endpoint, credentials: srv.credentials, region: 'us-east-1' });
  }

  before(async () => {
    tmp = await makeTempDir('pitr-completeness-');
    server = await startS3Server();
    // The AWS SDK warns on stderr about Node 20's support ending; the CLI's error must be stderr's first line.
    env = { ...server.env, AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: 'true' };
    const dbPath = join(tmp, 'app.db');
    fileReplica = join(tmp, 'replica');
    liveS3 = server.url('live');
    mkdirSync(join(tmp, 'out'));

    // G1: a few commits, then a clean stop (everything uploaded, the marker written).
    const db = openAppDatabase(dbPath);
    const a1 = startAgent([dbPath, fileReplica, liveS3, '--sync-interval', '0', '--state-dir', join(tmp, 'state-1')], { env });
    try {
      await waitUntil('generation 1', async () => (await runCliJson<ListOutput>(['list', fileReplica, '--json']).catch(() => undefined))?.generations.length === 1);
      appCommit(db, 5);
      const stopped = await a1.stop('SIGTERM');
      assert.equal(stopped.code, 0, stopped.stderr.slice(-3000));
    } finally {
      db.close();
    }

    // G2: a fresh state dir cannot prove continuity, so a new generation; the writer commits in
    // bursts, each shipped as its own segments (--sync-interval 0).
    const a2: Agent = startAgent([dbPath, fileReplica, liveS3, '--sync-interval', '0', '--state-dir', join(tmp, 'state-2')], { env });
    await waitUntil('generation 2', async () => (await runCliJson<ListOutput>(['list', fileReplica, '--json']).catch(() => undefined))?.generations.length === 2).catch((err: Error) => {
      throw new Error(`${err.message}; the agent said: ${a2.output().stderr.slice(-3000)}`);
    });
    const writer = startWriter({ db: dbPath, log: join(tmp, 'writer.log'), count: 90, seed: 18, pauseEvery: 5, pauseMs: 150 });
    let writing = true;
    void writer.result.then(() => (writing = false));
    let n = 0;
    while (writing || n < 2) {
      // A restore or status taken while uploads and marker writes land must never see the replica
      // as incomplete: the marker only names what is durable, and it is read before the LIST.
      live.push(await cli(['status', fileReplica, '--max-age', '1h']));
      live.push(await cli(['status', liveS3, '--max-age', '1h']));
      live.push(await cli(['restore', fileReplica, '-o', join(tmp, 'out', `live-${n++}.db`)]));
    }
    const w = await writer.result;
    assert.equal(w.code, 0, describeRun(w));
    // The running agent proves its last uploads within the marker interval (10 s), in both replicas.
    for (const url of [fileReplica, liveS3]) {
      await waitUntil(`the marker of ${url} to name the newest txid`, async () => {
        const s = await runCliJson<StatusJson>(['status', url, '--json'], { env });
        return s.proven && s.restorable ? s : undefined;
      });
    }
    const stopped = await a2.stop('SIGTERM');
    assert.equal(stopped.code, 0, stopped.stderr.slice(-3000));

    const list = await runCliJson<ListJson>(['list', fileReplica, '--json']);
    assert.equal(list.generations.length, 2);
    g1 = list.generations[0]!.id;
    gen2 = list.generations[1]!.id;
    g1Last = list.generations[0]!.lastTxid as number;
    g2Newest = list.generations[1]!.newestTxid;
    // Each replica's shipper batches on its own: the two hold the same transactions in different segments.
    const fileKeys = listFilesRecursive(fileReplica).filter((k) => k.startsWith(`generations/${gen2}/`));
    const liveClient = s3Client('live');
    const s3Keys = (await liveClient.list(`generations/${gen2}/`)).map((o) => o.key);
    await liveClient.close();
    for (const [backend, keys] of [['file', fileKeys], ['s3', s3Keys]] as const) {
      const segments = keys
        .filter((k) => k.endsWith('.seg'))
        .map((key) => {
          const n = parseObjectKey(key);
          assert.ok(n && n.kind === 'segment');
          return { key, firstTxid: n.firstTxid, lastTxid: n.lastTxid, firstTime: n.firstTime, lastTime: n.lastTime };
        });
      const snaps = keys.filter((k) => k.endsWith('.snap'));
      assert.equal(snaps.length, 1, `generation 2 has one snapshot in ${backend}: ${snaps.join(', ')}`);
      assert.ok(segments.length >= 5, `generation 2 has enough segments in ${backend} to lose one in the middle: ${segments.length}`);
      assert.equal(segments.at(-1)!.lastTxid, g2Newest);
      g2[backend] = { segments, snapshot: snaps[0] as string };
    }
  });

  after(async () => {
    await server?.close();
    if (tmp) await removeTempDir(tmp);
  });

  // ---- helpers ----

  /** A copy of the agent's replica, damaged as told; returns its URL. */
  async function damaged(backend: 'file' | 's3', d: Damage): Promise<string> {
    const name = `scenario-${++scenarios}`;
    if (backend === 'file') {
      const dir = join(tmp, name);
      cpSync(fileReplica, dir, { recursive: true });
      for (const k of d.remove ?? []) rmSync(join(dir, k));
      for (const k of d.empty ?? []) writeAt(join(dir, k), Buffer.alloc(0));
      for (const k of d.garbage ?? []) writeAt(join(dir, k), randomBytes(1000));
      return dir;
    }
    const from = s3Client('live');
    const to = s3Client(name);
    const keys = (await from.list('')).map((o) => o.key);
    for (const k of keys) await to.put(k, await from.get(k));
    for (const k of d.remove ?? []) assert.ok(keys.includes(k), `${k} is not in the S3 replica`);
    await to.delete(d.remove ?? []);
    for (const k of d.empty ?? []) await to.put(k, new Uint8Array(0));
    for (const k of d.garbage ?? []) await to.put(k, randomBytes(1000));
    await from.close();
    await to.close();
    return (server as S3TestServer).url(name);
  }

  function writeAt(path: string, bytes: Buffer): void {
    mkdirSync(join(path, '..'), { recursive: true });
    writeFileSync(path, bytes);
  }

  /** Everything a replica holds, to prove a command changed nothing in it. */
  async function fingerprint(url: string): Promise<string[]> {
    if (!url.startsWith('s3://')) {
      return listFilesRecursive(url).map((f) => {
        const p = join(url, f);
        return `${f} ${statSync(p).size} ${statSync(p).mtimeMs} ${createHash('sha256').update(readFileSync(p)).digest('hex')}`;
      });
    }
    const prefix = new URL(url).pathname.slice(1); // s3://bucket/prefix?...: the host is the bucket
    const c = s3Client(prefix);
    try {
      // Objects are immutable: a write would add or remove a key, or change a size or a time. The
      // heartbeat is the one object rewritten in place, so its content is compared too.
      const out: string[] = [];
      for (const o of await c.list('')) {
        const hash = o.key === 'heartbeat.json' ? createHash('sha256').update(await c.get(o.key)).digest('hex') : '';
        out.push(`${o.key} ${o.size} ${o.lastModified.getTime()} ${hash}`);
      }
      return out;
    } finally {
      await c.close();
    }
  }

  /** Runs a command that must leave the replica as it was. */
  async function readOnly(url: string, args: string[]): Promise<RunResult> {
    const beforeFp = await fingerprint(url);
    const r = await cli(args);
    assert.deepEqual(await fingerprint(url), beforeFp, `the replica changed under: ${describeRun(r)}`);
    return r;
  }

  /** A restore that must fail with `code`: exit 1, nothing on stdout, nothing at or beside OUT. */
  async function refusedRestore(url: string, extra: string[], code: string): Promise<string> {
    const dir = join(tmp, 'out', `refused-${++scenarios}`);
    mkdirSync(dir);
    const out = join(dir, 'restored.db');
    const r = await readOnly(url, ['restore', url, '-o', out, ...extra]);
    assert.equal(r.code, 1, describeRun(r));
    const err = expectCliError(r, code);
    assert.equal(r.stdout, '', describeRun(r));
    assert.ok(!existsSync(out), 'a refused restore left OUT');
    assert.deepEqual(readdirSync(dir), [], 'a refused restore left files next to OUT');
    return err.message;
  }

  async function restored(url: string, extra: string[]): Promise<{ r: RunResult; json: RestoreJson; digest: string }> {
    const out = join(tmp, 'out', `ok-${++scenarios}.db`);
    const r = await readOnly(url, ['restore', url, '-o', out, '--json', ...extra]);
    assert.equal(r.code, 0, describeRun(r));
    const state = inspectDatabase(out);
    assert.equal(state.integrity, 'ok');
    return { r, json: JSON.parse(r.stdout) as RestoreJson, digest: state.digest };
  }

  const pristine = new Map<string, string>();
  /** The digest the intact replica restores at `txid`: what any other path to that txid must give. */
  async function truth(txid: number): Promise<string> {
    let d = pristine.get(String(txid));
    if (d === undefined) {
      d = (await restored(fileReplica, ['--txid', String(txid)])).digest;
      pristine.set(String(txid), d);
    }
    return d;
  }

  async function failedVerify(url: string): Promise<VerifyJson> {
    const r = await readOnly(url, ['verify', url, '--json']);
    assert.equal(r.code, 1, describeRun(r));
    assert.ok(parseCliError(r.stderr), `verify prints its problems as pitr: error lines\n${describeRun(r)}`);
    return JSON.parse(r.stdout) as VerifyJson;
  }

  async function criticalStatus(url: string): Promise<StatusJson> {
    const r = await readOnly(url, ['status', url, '--max-age', '25h', '--json']);
    assert.equal(r.code, 2, describeRun(r));
    assert.match(r.stderr, /^CRITICAL: .*not restorable/m, describeRun(r));
    const s = JSON.parse(r.stdout) as StatusJson;
    assert.equal(s.restorable, false);
    assert.equal(s.check?.status, 'CRITICAL');
    return s;
  }

  // ---- the agent's replicas ----

  it('while the agent shipped, restore and status --max-age never called the live replicas incomplete', () => {
    assert.ok(live.length >= 6, `${live.length} runs`);
    for (const r of live) assert.equal(r.code, 0, describeRun(r));
  });

  it('the agent leaves a marker naming the newest durable txid of each generation', async () => {
    const hb = JSON.parse(readFileSync(join(fileReplica, 'heartbeat.json'), 'utf8')) as { generation: string; txid: number; ends?: { generation: string; txid: number }[] };
    assert.equal(hb.generation, gen2);
    assert.equal(hb.txid, g2Newest);
    assert.deepEqual(hb.ends?.map((e) => [e.generation, e.txid]), [[g1, g1Last]]);
    for (const url of [fileReplica, liveS3]) {
      const v = await readOnly(url, ['verify', url, '--json']);
      assert.equal(v.code, 0, describeRun(v));
      const l = await runCliJson<ListJson>(['list', url, '--json'], { env });
      assert.deepEqual(l.latest, { generation: gen2, txid: g2Newest, restorable: true });
      assert.ok(l.generations.every((g) => g.complete && g.holes.length === 0 && g.orphans.length === 0));
    }
  });

  it('reading the marker first does not change what a missing bucket is: REPLICA_NOT_FOUND', async () => {
    const srv = server as S3TestServer;
    const missing = `s3://no-such-bucket/app?endpoint=${srv.endpoint}&region=us-east-1`;
    for (const args of [['restore', missing, '-o', join(tmp, 'out', 'missing.db')], ['status', missing], ['list', missing], ['verify', missing]]) {
      expectCliError(await cli(args), 'REPLICA_NOT_FOUND');
    }
  });

  // ---- the base snapshot of the newest generation is gone ----

  for (const backend of ['file', 's3'] as const) {
    it(`${backend}: without its base snapshot the newest generation is unrestorable, and said to be; no fallback to the older one`, async () => {
      const url = await damaged(backend, { remove: [g2[backend].snapshot] });
      const msg = await refusedRestore(url, [], 'REPLICA_INCOMPLETE');
      assert.match(msg, new RegExp(`generation ${gen2} has no base snapshot`));
      assert.match(msg, new RegExp(`restorable: generation ${g1} txids? \\d+\\.\\.${g1Last}`), 'it says what is restorable instead');
      // A time after everything is "the latest state" too.
      await refusedRestore(url, ['--to', new Date(Date.now() + 3_600_000).toISOString()], 'REPLICA_INCOMPLETE');
      // The older generation, asked for explicitly, still restores exactly.
      const old = await restored(url, ['--txid', String(g1Last)]);
      assert.equal(old.json.generation, g1);
      assert.equal(old.digest, await truth(g1Last));

      const v = await failedVerify(url);
      assert.ok(v.problems.some((p) => p.check === 'completeness' && p.code === 'REPLICA_INCOMPLETE' && p.message.includes('no base snapshot')), JSON.stringify(v.problems));
      const s = await criticalStatus(url);
      assert.equal(s.generation, gen2);
      assert.match(s.problems.join('\n'), /no base snapshot/);
      if (backend === 'file') {
        const l = await runCliJson<ListJson>(['list', url, '--json']);
        const g = l.generations[1]!;
        assert.deepEqual([g.missingBase?.firstTxid, g.complete, g.orphans.length], [g2[backend].segments[0]!.firstTxid, false, g2[backend].segments.length]);
        const text = await readOnly(url, ['list', url]);
        assert.equal(text.code, 0, describeRun(text));
        assert.match(text.stdout, /MISSING BASE {2}generation \S+ has no base snapshot/);
        assert.match(text.stdout, /ORPHAN {2}generations\//);
      }
    });
  }

  // ---- a middle segment of the newest generation is gone ----

  for (const backend of ['file', 's3'] as const) {
    it(`${backend}: a segment missing in the middle: latest and targets past the hole refuse, naming it; targets before it restore`, async () => {
      const victim = g2[backend].segments[Math.floor(g2[backend].segments.length / 2)]!;
      const url = await damaged(backend, { remove: [victim.key] });
      const range = victim.firstTxid === victim.lastTxid ? `txid ${victim.firstTxid}` : `txids ${victim.firstTxid}..${victim.lastTxid}`;
      const msg = await refusedRestore(url, [], 'REPLICA_INCOMPLETE');
      assert.ok(msg.includes(`${range} of generation ${gen2} ${range.startsWith('txids') ? 'are' : 'is'} missing`), msg);
      assert.match(msg, /cannot be restored, no snapshot reaches (it|them)/);
      assert.ok(msg.includes(`generation ${gen2} txids`) && msg.includes(`..${victim.firstTxid - 1} (`), `it names the restorable part: ${msg}`);
      await refusedRestore(url, ['--txid', String(victim.lastTxid + 1)], 'REPLICA_INCOMPLETE');
      await refusedRestore(url, ['--to', new Date(victim.lastTime + 1).toISOString()], 'REPLICA_INCOMPLETE');
      // Just before the hole: exact.
      const ok = await restored(url, ['--txid', String(victim.firstTxid - 1)]);
      assert.equal(ok.json.txid, victim.firstTxid - 1);
      assert.equal(ok.digest, await truth(victim.firstTxid - 1));

      const v = await failedVerify(url);
      const completeness = v.problems.filter((p) => p.check === 'completeness');
      assert.ok(completeness.some((p) => p.message.includes(range)), JSON.stringify(v.problems));
      // Every orphan is named, one problem each.
      const orphans = g2[backend].segments.filter((x) => x.firstTxid > victim.lastTxid).map((x) => x.key);
      assert.deepEqual(
        completeness.filter((p) => p.message.includes('no snapshot reaches it')).map((p) => p.object),
        orphans,
      );
      assert.equal(parseCliError((await cli(['verify', url])).stderr)?.code, 'REPLICA_INCOMPLETE');
      const s = await criticalStatus(url);
      assert.match(s.problems.join('\n'), new RegExp(range.replace(/\./g, '\\.')));
      if (backend === 'file') {
        const g = (await runCliJson<ListJson>(['list', url, '--json'])).generations[1]!;
        assert.deepEqual(g.holes.map((h) => [h.kind, h.firstTxid, h.lastTxid]), [['gap', victim.firstTxid, victim.lastTxid]]);
        assert.deepEqual(
          g.orphans.map((o) => o.key),
          g2[backend].segments.filter((x) => x.firstTxid > victim.lastTxid).map((x) => x.key),
        );
        assert.equal(g.lastTxid, victim.firstTxid - 1);
        assert.equal(g.newestTxid, g2Newest);
        const text = await readOnly(url, ['list', url]);
        assert.match(text.stdout, /HOLE {2}txids? \d+/);
        assert.match(text.stdout, /ORPHAN {2}generations\//);
        assert.match(text.stdout, /INCOMPLETE {2}its newest txid/);
      }
    });
  }

  // ---- the newest segment is gone ----

  for (const backend of ['file', 's3'] as const) {
    it(`${backend}: the newest segment missing is caught by the marker`, async () => {
      const victim = g2[backend].segments.at(-1)!;
      const url = await damaged(backend, { remove: [victim.key] });
      const msg = await refusedRestore(url, [], 'REPLICA_INCOMPLETE');
      assert.match(msg, new RegExp(`of generation ${gen2} (is|are) missing at the end`));
      assert.ok(msg.includes(`marker says txid ${g2Newest} is durable`), msg);
      await refusedRestore(url, ['--to', new Date(victim.lastTime + 60_000).toISOString()], 'REPLICA_INCOMPLETE');
      const ok = await restored(url, ['--txid', String(victim.firstTxid - 1)]);
      assert.equal(ok.digest, await truth(victim.firstTxid - 1));
      const v = await failedVerify(url);
      assert.ok(v.problems.some((p) => p.check === 'completeness' && p.message.includes('missing at the end')), JSON.stringify(v.problems));
      await criticalStatus(url);
      if (backend === 'file') {
        const g = (await runCliJson<ListJson>(['list', url, '--json'])).generations[1]!;
        assert.deepEqual(g.holes.map((h) => [h.kind, h.firstTxid, h.lastTxid]), [['tail', victim.firstTxid, g2Newest]]);
        assert.equal(g.provenTxid, g2Newest);
      }
    });
  }

  // ---- one bad object does not block what intact ones can serve ----

  for (const backend of ['file', 's3'] as const) {
    it(`${backend}: a zero-byte segment named as spanning the whole generation is skipped, and said to be`, async () => {
      const first = g2[backend].segments[0]!;
      const last = g2[backend].segments.at(-1)!;
      const junk = segmentKey(gen2, first.firstTxid, last.lastTxid, first.firstTime, last.lastTime);
      const url = await damaged(backend, { empty: [junk] });
      const latest = await restored(url, []);
      assert.equal(latest.json.txid, g2Newest);
      assert.equal(latest.digest, await truth(g2Newest));
      assert.deepEqual(latest.json.skipped, [{ key: junk, reason: 'empty (0 bytes)' }]);
      assert.ok(latest.r.stderr.includes(`pitr: warning: skipped ${junk}: empty (0 bytes)`), describeRun(latest.r));
      const mid = g2[backend].segments[2]!.lastTxid;
      assert.equal((await restored(url, ['--txid', String(mid)])).digest, await truth(mid));
      // verify names the bad object, and still restores around it.
      const v = await failedVerify(url);
      assert.deepEqual(v.problems.map((p) => [p.check, p.code, p.object]), [['checksum', 'OBJECT_CORRUPT', junk]]);
      assert.equal(v.integrity, 'ok');
      assert.equal(v.txid, g2Newest);
    });
  }

  it('file: the same object holding garbage (found bad only when read) is planned around when the restore reads it', async () => {
    const first = g2.file.segments[0]!;
    const last = g2.file.segments.at(-1)!;
    const junk = segmentKey(gen2, first.firstTxid, last.lastTxid, first.firstTime, last.lastTime);
    const url = await damaged('file', { garbage: [junk] });
    const latest = await restored(url, []);
    assert.equal(latest.json.txid, g2Newest);
    assert.equal(latest.digest, await truth(g2Newest));
    assert.deepEqual(latest.json.skipped.map((s) => s.key), [junk]);
    assert.match(latest.r.stderr, new RegExp(`pitr: warning: skipped ${junk.replace(/\./g, '\\.')}: `));
  });

  for (const backend of ['file', 's3'] as const) {
    it(`${backend}: a zero-byte snapshot under a newer, foreign generation does not hide the real latest state`, async () => {
      const junk = snapshotKey(FOREIGN_GEN, g2Newest + 1000, Date.now());
      const url = await damaged(backend, { empty: [junk] });
      const latest = await restored(url, []);
      assert.equal(latest.json.generation, gen2);
      assert.equal(latest.json.txid, g2Newest);
      assert.equal(latest.digest, await truth(g2Newest));
      assert.deepEqual(latest.json.skippedGenerations, [FOREIGN_GEN]);
      assert.match(latest.r.stderr, new RegExp(`generation ${FOREIGN_GEN} holds only damaged objects`));
      const ok = await readOnly(url, ['status', url, '--max-age', '25h', '--json']);
      assert.equal(ok.code, 0, describeRun(ok));
      const s = JSON.parse(ok.stdout) as StatusJson;
      assert.equal(s.generation, gen2);
      assert.match(s.problems.join('\n'), new RegExp(`damaged object ${junk}`));
    });
  }
});
