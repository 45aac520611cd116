/**
 * Shared machinery of the agent benchmarks: the real CLI as a child process, the app-writer child,
 * /proc readings, replica watchers (file: inotify; S3: LIST polling or a counting proxy), and
 * percentiles. Nothing here is mocked: every number comes from real processes and real stores.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, watch, type FSWatcher } from 'node:fs';
import { createServer, Agent as HttpAgent, type Server } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { parseObjectKey } from '../src/segment/object-names.js';
import type { StorageClient } from '../src/storage/storage-client.js';
import { nowUs } from './app-db.js';
import { forwardRequest } from '../test/storage/gate-proxy.js';

/** The checkout's `pitr` launcher: the benches run pitr with the node flags users get. */
const PITR = fileURLToPath(new URL('../../pitr', import.meta.url));
const WRITER = fileURLToPath(new URL('./app-writer.js', import.meta.url));
const MAIN = fileURLToPath(new URL('../src/cli/main.js', import.meta.url));

// The SDK's one-time Node 20 notice would land in the middle of the table.
process.env['AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED'] ??= 'true';

const children = new Set<ChildProcess>();
process.once('exit', () => {
  for (const c of children) c.kill('SIGKILL');
});

export function tempDir(prefix: string): string {
  return mkdtempSync(join(tmpdir(), `pitr-bench-${prefix}-`));
}

export function removeDir(dir: string): void {
  if (process.env['PITR_BENCH_KEEP']) {
    process.stderr.write(`keeping ${dir}\n`);
    return;
  }
  rmSync(dir, { recursive: true, force: true });
}

export function benchEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env, AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: 'true', ...extra };
  delete env['NODE_TEST_CONTEXT'];
  return env;
}

// ---- /proc ----

let clkTck: number | undefined;
function ticksPerSecond(): number {
  if (clkTck === undefined) {
    const r = spawnSync('getconf', ['CLK_TCK'], { encoding: 'utf8' });
    clkTck = Number(r.stdout.trim()) || 100;
  }
  return clkTck;
}

export interface ProcStats {
  /** utime + stime, in seconds (resolution 1/CLK_TCK). */
  cpuSeconds: number;
  rssBytes: number;
  /** VmHWM: peak resident set size over the process's life. */
  peakRssBytes: number;
}

/** CPU time and memory of a live process, from /proc/PID/stat and /proc/PID/status. */
export function procStats(pid: number): ProcStats {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  // Fields after "(comm)": state is field 3, so utime (14) and stime (15) are at 11 and 12 here.
  const ticks = Number(fields[11]) + Number(fields[12]);
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = (name: string): number => Number(new RegExp(`^${name}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? 0) * 1024;
  return { cpuSeconds: ticks / ticksPerSecond(), rssBytes: kb('VmRSS'), peakRssBytes: kb('VmHWM') };
}

// ---- the agent ----

export interface AgentProcess {
  pid: number;
  child: ChildProcess;
  stderr(): string;
  /** SIGTERM and wait for exit (SIGKILL after timeoutMs); returns the exit code. */
  stop(timeoutMs?: number): Promise<number | null>;
  exited: Promise<number | null>;
}

/** `pitr replicate ...args` as a child process, JSON logs kept (last 256 KiB) for diagnostics. */
export function startAgent(args: readonly string[], opts: { env?: Record<string, string>; nodeFlags?: readonly string[] } = {}): AgentProcess {
  // The launcher execs node, so child.pid is the agent itself (its /proc readings are the agent's).
  // Node flags that NODE_OPTIONS refuses (--cpu-prof) need node itself, with the launcher's flag.
  const [cmd, pre] = opts.nodeFlags ? [process.execPath, ['--max-semi-space-size=1', ...opts.nodeFlags, MAIN]] : [PITR, []];
  const child = spawn(cmd, [...pre, 'replicate', ...args, '--log-format', 'json'], {
    env: benchEnv(opts.env),
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  children.add(child);
  let err = '';
  child.stdout!.resume();
  child.stderr!.setEncoding('utf8').on('data', (d: string) => {
    err += d;
    if (err.length > 512 * 1024) err = err.slice(-256 * 1024);
  });
  const exited = new Promise<number | null>((resolve) =>
    child.once('exit', (code) => {
      children.delete(child);
      resolve(code);
    }),
  );
  return {
    pid: child.pid!,
    child,
    stderr: () => err,
    exited,
    async stop(timeoutMs = 60_000) {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
      const t = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
      const code = await exited;
      clearTimeout(t);
      return code;
    },
  };
}

/** Runs `pitr ...args` to completion; returns wall time and stdout. Throws on failure. */
export function runCli(args: readonly string[], env: Record<string, string> = {}): { wallMs: number; stdout: string } {
  const t0 = performance.now();
  const r = spawnSync(PITR, args, { env: benchEnv(env), encoding: 'utf8', maxBuffer: 64 << 20 });
  const wallMs = performance.now() - t0;
  if (r.status !== 0) throw new Error(`pitr ${args.join(' ')} failed (${r.status}): ${r.stderr}`);
  return { wallMs, stdout: r.stdout };
}

// ---- the app ----

export interface CommitLog {
  k: number[];
  /** When COMMIT returned, µs on CLOCK_MONOTONIC. */
  endUs: number[];
  /** BEGIN..COMMIT duration, µs. */
  latUs: number[];
}

export interface WriterProcess {
  pid: number;
  ready: Promise<void>;
  go(): void;
  done: Promise<CommitLog>;
}

/** Starts bench/app-writer.js (see there for args); go() starts the workload once it is ready. */
export function startWriter(args: readonly string[], outFile: string): WriterProcess {
  const child = spawn(process.execPath, [WRITER, ...args, '--out', outFile], { env: benchEnv(), stdio: ['pipe', 'pipe', 'pipe'] });
  children.add(child);
  let out = '';
  let err = '';
  let onReady: () => void = () => {};
  const ready = new Promise<void>((r) => (onReady = r));
  child.stdout!.setEncoding('utf8').on('data', (d: string) => {
    out += d;
    if (out.includes('ready\n')) onReady();
  });
  child.stderr!.setEncoding('utf8').on('data', (d: string) => (err += d));
  const done = new Promise<CommitLog>((resolve, reject) =>
    child.once('exit', (code) => {
      children.delete(child);
      if (code !== 0) reject(new Error(`app-writer exited ${code}: ${err}`));
      else resolve(JSON.parse(readFileSync(outFile, 'utf8')) as CommitLog);
    }),
  );
  return {
    pid: child.pid!,
    ready: Promise.race([ready, done.then(() => {})]),
    go: () => child.stdin!.end('go\n'),
    done,
  };
}

// ---- replicas ----

export interface Snapshot {
  generation: string;
  txid: number;
  key: string;
  size: number;
}

/** Polls the replica until it lists a snapshot (the agent's first), every 20 ms; fails fast if `agent` exits. */
export async function waitForSnapshot(storage: StorageClient, timeoutMs = 120_000, agent?: AgentProcess): Promise<Snapshot> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (agent && (agent.child.exitCode !== null || agent.child.signalCode !== null)) {
      throw new Error(`the agent exited before its first snapshot reached ${storage.url}: ${agent.stderr().slice(-2000)}`);
    }
    try {
      for (const o of await storage.list('generations/')) {
        const n = parseObjectKey(o.key);
        if (n?.kind === 'snapshot') return { generation: n.generation, txid: n.txid, key: o.key, size: o.size };
      }
    } catch {
      // not there yet
    }
    if (Date.now() > deadline) throw new Error(`no snapshot in ${storage.url} after ${timeoutMs} ms`);
    await sleep(20);
  }
}

export interface ObjectSeen {
  key: string;
  generation: string;
  kind: 'segment' | 'snapshot';
  firstTxid: number;
  lastTxid: number;
  /** When the bench first saw it, µs on CLOCK_MONOTONIC. */
  seenUs: number;
}

/** Collects the snapshots and segments of every generation as they become visible in a replica. */
export abstract class ReplicaWatcher {
  readonly seen = new Map<string, ObjectSeen>();
  maxTxid = 0;
  protected note(key: string, t: number): void {
    if (this.seen.has(key)) return;
    const n = parseObjectKey(key);
    if (n === null) return;
    const o: ObjectSeen =
      n.kind === 'segment'
        ? { key, generation: n.generation, kind: 'segment', firstTxid: n.firstTxid, lastTxid: n.lastTxid, seenUs: t }
        : { key, generation: n.generation, kind: 'snapshot', firstTxid: n.txid, lastTxid: n.txid, seenUs: t };
    this.seen.set(key, o);
    if (o.lastTxid > this.maxTxid) this.maxTxid = o.lastTxid;
  }
  /** Record an object the caller saw before this watcher started (the generation's first snapshot). */
  known(key: string, t: number): void {
    this.note(key, t);
  }
  snapshots(): ObjectSeen[] {
    return [...this.seen.values()].filter((o) => o.kind === 'snapshot').sort((a, b) => a.firstTxid - b.firstTxid);
  }
  segments(): ObjectSeen[] {
    return [...this.seen.values()].filter((o) => o.kind === 'segment').sort((a, b) => a.firstTxid - b.firstTxid);
  }
  async waitFor(txid: number, timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (this.maxTxid < txid) {
      if (Date.now() > deadline) throw new Error(`replica reached txid ${this.maxTxid}, not ${txid}, within ${timeoutMs} ms`);
      await sleep(10);
    }
  }
  /** Waits until nothing new has appeared for quietMs. */
  async settle(quietMs: number, timeoutMs = 60_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    let count = -1;
    let since = Date.now();
    while (Date.now() < deadline) {
      if (this.seen.size !== count) {
        count = this.seen.size;
        since = Date.now();
      } else if (Date.now() - since >= quietMs) return;
      await sleep(20);
    }
  }
  abstract close(): Promise<void> | void;
}

/**
 * File replica: inotify (fs.watch) on `generations/`, each generation's directory and its
 * `snapshots/` and `segments/` directories. An object counts from the event of its final name (the
 * backend writes a temp file, fsyncs it, renames it into place, then fsyncs the directory). A
 * readdir of everything every 200 ms is a safety net for missed events; `missedEvents` counts how
 * often it was needed.
 */
export class FileReplicaWatcher extends ReplicaWatcher {
  private readonly watchers = new Map<string, FSWatcher>();
  private readonly timer: NodeJS.Timeout;
  missedEvents = 0;

  constructor(private readonly root: string) {
    super();
    this.attach('generations');
    this.scan(false);
    this.timer = setInterval(() => this.scan(true), 200);
  }

  /** Watch dir `rel` (relative to the root, '/'-separated) if it exists and is not watched yet. */
  private attach(rel: string): void {
    if (this.watchers.has(rel)) return;
    const abs = join(this.root, ...rel.split('/'));
    if (!existsSync(abs)) return;
    const depth = rel.split('/').length; // 1 = generations, 2 = a generation, 3 = its snapshots|segments
    try {
      const w = watch(abs, (_event, name) => {
        if (typeof name !== 'string' || name.startsWith('.')) return;
        const t = nowUs();
        if (depth < 3) {
          this.attach(`${rel}/${name}`);
          this.scanDir(`${rel}/${name}`, false);
        } else if (existsSync(join(abs, name))) this.note(`${rel}/${name}`, t);
      });
      this.watchers.set(rel, w);
    } catch {
      // vanished meanwhile; the periodic scan retries
    }
  }

  private scanDir(rel: string, fallback: boolean): void {
    const abs = join(this.root, ...rel.split('/'));
    let names: string[];
    try {
      names = readdirSync(abs);
    } catch {
      return;
    }
    const depth = rel.split('/').length;
    const t = nowUs();
    for (const name of names) {
      if (name.startsWith('.')) continue;
      if (depth < 3) {
        this.attach(`${rel}/${name}`);
        this.scanDir(`${rel}/${name}`, fallback);
      } else if (!this.seen.has(`${rel}/${name}`)) {
        if (fallback) this.missedEvents++;
        this.note(`${rel}/${name}`, t);
      }
    }
  }

  private scan(fallback: boolean): void {
    this.attach('generations');
    this.scanDir('generations', fallback);
  }

  close(): void {
    clearInterval(this.timer);
    for (const w of this.watchers.values()) w.close();
  }
}

/**
 * S3 replica by polling: LIST `generations/` through pitr's S3Storage, one request at a time,
 * `intervalMs` after the previous one returned. An object counts from the moment the LIST that
 * first shows it returned (an upper bound: it became visible at most one interval plus one round
 * trip earlier).
 */
export class S3ListWatcher extends ReplicaWatcher {
  private stopped = false;
  private readonly loop: Promise<void>;
  polls = 0;
  pollUs = 0;

  constructor(storage: StorageClient, readonly intervalMs: number) {
    super();
    this.loop = (async () => {
      while (!this.stopped) {
        const t0 = nowUs();
        try {
          const objects = await storage.list('generations/');
          const t = nowUs();
          this.polls++;
          this.pollUs += t - t0;
          for (const o of objects) this.note(o.key, t);
        } catch {
          // transient; next poll
        }
        await sleep(intervalMs);
      }
    })();
  }

  async close(): Promise<void> {
    this.stopped = true;
    await this.loop;
  }
}

/**
 * Objects whose upload the counting proxy saw acknowledged by the store: a 2xx to a PutObject
 * (no uploadId) or to a CompleteMultipartUpload (POST ?uploadId=), the moments S3 publishes them.
 */
export class ProxyReplicaWatcher extends ReplicaWatcher {
  constructor(proxy: CountingProxy) {
    super();
    const prefix = `/${proxy.bucket}/${proxy.prefix}/`;
    proxy.onResponse = (r) => {
      if (r.status < 200 || r.status >= 300 || !r.path.startsWith(prefix)) return;
      const multipart = r.query.includes('uploadId=');
      if ((r.method === 'PUT' && !multipart) || (r.method === 'POST' && multipart)) this.note(r.path.slice(prefix.length), r.endUs);
    };
  }
  close(): void {}
}

export interface ProxiedRequest {
  method: string;
  path: string;
  query: string;
  status: number;
  /** When the store's response headers reached the proxy, µs on CLOCK_MONOTONIC. */
  endUs: number;
}

/**
 * A loopback HTTP proxy in front of s3rver that forwards every request unchanged (headers too, so
 * SigV4 signatures over Host stay valid) and records each one: the honest way to count what the
 * agent asks of its store, and to see when a PUT is acknowledged.
 */
export class CountingProxy {
  readonly requests: ProxiedRequest[] = [];
  onResponse: ((r: ProxiedRequest) => void) | undefined;
  private server!: Server;
  private readonly upstreamAgent = new HttpAgent({ keepAlive: true, maxSockets: 64 });
  port = 0;

  private constructor(
    private readonly upstream: URL,
    readonly bucket: string,
    readonly prefix: string,
  ) {}

  static async start(upstreamEndpoint: string, bucket: string, prefix: string): Promise<CountingProxy> {
    const p = new CountingProxy(new URL(upstreamEndpoint), bucket, prefix);
    p.server = createServer((req, res) =>
      forwardRequest(req, res, p.upstream, p.upstreamAgent, (status) => {
        const [p0, q0] = (req.url ?? '').split('?');
        const rec: ProxiedRequest = { method: req.method ?? '', path: decodeURIComponent(p0!), query: q0 ?? '', status, endUs: nowUs() };
        p.requests.push(rec);
        p.onResponse?.(rec);
      }),
    );
    p.server.keepAliveTimeout = 60_000;
    await new Promise<void>((resolve) => p.server.listen(0, '127.0.0.1', resolve));
    p.port = (p.server.address() as { port: number }).port;
    return p;
  }

  /** Replica URL that routes through this proxy. */
  url(): string {
    return `s3://${this.bucket}/${this.prefix}?endpoint=http://127.0.0.1:${this.port}&region=us-east-1`;
  }

  async close(): Promise<void> {
    this.server.closeAllConnections();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
    this.upstreamAgent.destroy();
  }
}

// ---- numbers ----

/** Nearest-rank percentile (p in 0..100) of unsorted values. */
export function percentile(values: readonly number[], p: number): number {
  if (values.length === 0) return NaN;
  const s = [...values].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))]!;
}

/**
 * Per commit, the time from COMMIT returning to the first moment the replica held it, in ms.
 *
 * Commit k's txid: the writer is the only writer and starts after the first snapshot (txid S0,
 * holding commit K0 = 0), so in a generation whose snapshot has txid S and holds commits up to K,
 * commit K + j is txid S + j. A generation break (the agent could not prove continuity) starts a
 * new generation whose snapshot holds every commit up to its K (read by `commitsIn`, a restore at
 * that txid); commits the old generation had not captured become durable with that snapshot. A
 * commit is durable at the earliest sighting of a segment with its txid or of a later snapshot
 * holding it. Throws when the replica's txids do not fit this mapping.
 */
export async function commitLagsMs(
  log: CommitLog,
  watcher: ReplicaWatcher,
  commitsIn: (snapshot: ObjectSeen) => Promise<number>,
): Promise<{ lags: number[]; generations: number; viaSnapshot: number }> {
  const snaps = watcher.snapshots();
  if (snaps.length === 0) throw new Error('no snapshot seen in the replica');
  const gens: { snap: ObjectSeen; k: number; segs: ObjectSeen[]; lastTxid: number }[] = [];
  // One base snapshot per generation: the first. Later snapshots of a generation add nothing here.
  for (const s of snaps) {
    if (gens.some((g) => g.snap.generation === s.generation)) continue;
    const segs = watcher.segments().filter((o) => o.generation === s.generation);
    gens.push({ snap: s, k: gens.length === 0 ? 0 : await commitsIn(s), segs, lastTxid: Math.max(s.lastTxid, ...segs.map((o) => o.lastTxid)) });
  }
  const n = log.k.length;
  for (let i = 0; i < gens.length; i++) {
    const g = gens[i]!;
    const nextK = gens[i + 1]?.k ?? n;
    const captured = g.lastTxid - g.snap.firstTxid;
    const ok = nextK >= g.k && (i + 1 < gens.length ? captured <= nextK - g.k : captured === nextK - g.k);
    if (!ok) throw new Error(`generation ${g.snap.generation}: txids ${g.snap.firstTxid}..${g.lastTxid} do not fit commits ${g.k}..${nextK}: another writer, or the txid mapping is off`);
  }
  const lags: number[] = [];
  let viaSnapshot = 0;
  let gi = 0;
  for (let i = 0; i < n; i++) {
    const k = log.k[i]!;
    while (gi + 1 < gens.length && gens[gi + 1]!.k < k) gi++;
    const g = gens[gi]!;
    const txid = g.snap.firstTxid + (k - g.k);
    let seen = Infinity;
    for (const o of g.segs) if (o.firstTxid <= txid && txid <= o.lastTxid) seen = Math.min(seen, o.seenUs);
    let bySnap = false;
    for (let h = gi + 1; h < gens.length; h++) {
      if (gens[h]!.k >= k && gens[h]!.snap.seenUs < seen) {
        seen = gens[h]!.snap.seenUs;
        bySnap = true;
      }
    }
    if (seen === Infinity) throw new Error(`commit ${k} (txid ${txid}) never became durable in the replica`);
    if (bySnap) viaSnapshot++;
    lags.push((seen - log.endUs[i]!) / 1000);
  }
  return { lags, generations: gens.length, viaSnapshot };
}

/** Warnings and errors in the agent's JSON log, counted by message. */
export function logProblems(stderr: string): string {
  const counts = new Map<string, number>();
  for (const line of stderr.split('\n')) {
    const m = /"level":"(warn|error)","msg":"([^"]*)"/.exec(line);
    if (m) counts.set(`${m[1]}: ${m[2]}`, (counts.get(`${m[1]}: ${m[2]}`) ?? 0) + 1);
  }
  if (counts.size === 0) return 'agent log: no warnings or errors';
  return `agent log: ${[...counts].map(([m, c]) => `${c} x "${m.length > 90 ? `${m.slice(0, 90)}...` : m}"`).join(', ')}`;
}

export const round = (v: number, digits = 2): number => Math.round(v * 10 ** digits) / 10 ** digits;
export const MB = 1e6;
