/**
 * Shared machinery of the agent benchmarks: the real CLI as a child process, the app-writer child,
 * /proc readings, replica watchers (file: inotify; S3: LIST polling or a counting proxy), and
 * percentiles. Nothing here is mocked: every number comes from real processes and real stores.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, watch, type FSWatcher } from 'node:fs';
import { createServer, request, Agent as HttpAgent, type Server } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { parseObjectKey, segmentsPrefix } from '../src/segment/object-names.js';
import type { StorageClient } from '../src/storage/storage-client.js';
import { nowUs } from './app-db.js';

export const CLI = fileURLToPath(new URL('../src/cli/main.js', import.meta.url));
const WRITER = fileURLToPath(new URL('./app-writer.js', import.meta.url));

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
export function startAgent(args: readonly string[], opts: { env?: Record<string, string>; nodeArgs?: string[] } = {}): AgentProcess {
  const child = spawn(process.execPath, [...(opts.nodeArgs ?? []), CLI, 'replicate', ...args, '--log-format', 'json'], {
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
  const r = spawnSync(process.execPath, [CLI, ...args], { env: benchEnv(env), encoding: 'utf8', maxBuffer: 64 << 20 });
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

/** Polls the replica until it lists a snapshot (the agent's first), every 20 ms. */
export async function waitForSnapshot(storage: StorageClient, timeoutMs = 120_000): Promise<Snapshot> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
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

export interface SegmentSeen {
  key: string;
  firstTxid: number;
  lastTxid: number;
  /** When the bench first saw it, µs on CLOCK_MONOTONIC. */
  seenUs: number;
}

/** Collects segments of one generation as they become visible in some replica. */
export abstract class SegmentWatcher {
  readonly seen = new Map<string, SegmentSeen>();
  maxTxid = 0;
  constructor(readonly generation: string) {}
  protected note(name: string, t: number): void {
    if (this.seen.has(name)) return;
    const parsed = parseObjectKey(`${segmentsPrefix(this.generation)}${name}`);
    if (parsed?.kind !== 'segment') return;
    this.seen.set(name, { key: name, firstTxid: parsed.firstTxid, lastTxid: parsed.lastTxid, seenUs: t });
    if (parsed.lastTxid > this.maxTxid) this.maxTxid = parsed.lastTxid;
  }
  async waitFor(txid: number, timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (this.maxTxid < txid) {
      if (Date.now() > deadline) throw new Error(`replica reached txid ${this.maxTxid}, not ${txid}, within ${timeoutMs} ms`);
      await sleep(10);
    }
  }
  abstract close(): Promise<void> | void;
}

/**
 * File replica: inotify (fs.watch) on the generation's segments directory; an object counts from
 * the event of its final name (the backend writes a temp file, fsyncs it, renames it into place,
 * then fsyncs the directory). A readdir every 200 ms is a safety net for missed events and
 * counts how often it was needed.
 */
export class FileSegmentWatcher extends SegmentWatcher {
  private watcher: FSWatcher | undefined;
  private genWatcher: FSWatcher | undefined;
  private timer: NodeJS.Timeout;
  missedEvents = 0;
  private readonly dir: string;

  constructor(replicaDir: string, generation: string) {
    super(generation);
    this.dir = join(replicaDir, segmentsPrefix(generation));
    const genDir = join(replicaDir, 'generations', generation);
    this.genWatcher = watch(genDir, () => this.attach());
    this.attach();
    this.timer = setInterval(() => this.scan(true), 200);
  }

  private attach(): void {
    if (this.watcher || !existsSync(this.dir)) return;
    this.watcher = watch(this.dir, (_event, name) => {
      if (typeof name === 'string' && !name.startsWith('.')) {
        const t = nowUs();
        if (existsSync(join(this.dir, name))) this.note(name, t);
      }
    });
    this.genWatcher?.close();
    this.genWatcher = undefined;
    this.scan(false);
  }

  private scan(fallback: boolean): void {
    if (!existsSync(this.dir)) return;
    const t = nowUs();
    for (const name of readdirSync(this.dir)) {
      if (name.startsWith('.') || this.seen.has(name)) continue;
      if (fallback && this.watcher) this.missedEvents++;
      this.note(name, t);
    }
  }

  close(): void {
    clearInterval(this.timer);
    this.watcher?.close();
    this.genWatcher?.close();
  }
}

/**
 * S3 replica by polling: LIST the generation's segments prefix through pitr's S3Storage, one
 * request at a time, `intervalMs` after the previous one returned. An object counts from the
 * moment the LIST that first shows it returned (an upper bound: it became visible at most one
 * interval plus one round trip earlier).
 */
export class S3ListWatcher extends SegmentWatcher {
  private stopped = false;
  private loop: Promise<void>;
  polls = 0;
  pollUs = 0;

  constructor(storage: StorageClient, generation: string, readonly intervalMs: number) {
    super(generation);
    const prefix = segmentsPrefix(generation);
    this.loop = (async () => {
      while (!this.stopped) {
        const t0 = nowUs();
        try {
          const objects = await storage.list(prefix);
          const t = nowUs();
          this.polls++;
          this.pollUs += t - t0;
          for (const o of objects) this.note(o.key.slice(prefix.length), t);
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

/** Segments whose PUT the counting proxy saw acknowledged (2xx from the store). */
export class ProxySegmentWatcher extends SegmentWatcher {
  constructor(proxy: CountingProxy, generation: string) {
    super(generation);
    const prefix = `/${proxy.bucket}/${proxy.prefix}/${segmentsPrefix(generation)}`;
    proxy.onResponse = (r) => {
      if (r.method === 'PUT' && r.status >= 200 && r.status < 300 && r.path.startsWith(prefix)) this.note(r.path.slice(prefix.length), r.endUs);
    };
  }
  close(): void {}
}

export interface ProxiedRequest {
  method: string;
  path: string;
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
    p.server = createServer((req, res) => {
      const up = request(
        {
          host: p.upstream.hostname,
          port: p.upstream.port,
          method: req.method,
          path: req.url,
          headers: req.headers,
          agent: p.upstreamAgent,
        },
        (ur) => {
          const rec: ProxiedRequest = { method: req.method ?? '', path: decodeURIComponent((req.url ?? '').split('?')[0]!), status: ur.statusCode ?? 0, endUs: nowUs() };
          p.requests.push(rec);
          p.onResponse?.(rec);
          res.writeHead(ur.statusCode ?? 502, ur.headers);
          ur.pipe(res);
        },
      );
      up.on('error', () => {
        if (!res.headersSent) res.writeHead(502);
        res.end();
      });
      req.pipe(up);
    });
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
 * Per commit, the time from COMMIT returning to the first moment an object holding its txid was
 * seen in the replica, in ms. Commit k is txid snapshotTxid + k (the writer is the only writer and
 * started after the generation's snapshot); checked by the caller against the replica's last txid.
 */
export function lagsMs(log: CommitLog, snapshotTxid: number, watcher: SegmentWatcher): number[] {
  const segs = [...watcher.seen.values()].sort((a, b) => a.firstTxid - b.firstTxid);
  const out: number[] = [];
  let j = 0;
  for (let i = 0; i < log.k.length; i++) {
    const txid = snapshotTxid + log.k[i]!;
    while (j < segs.length && segs[j]!.lastTxid < txid) j++;
    const s = segs[j];
    if (!s || s.firstTxid > txid) throw new Error(`txid ${txid} (commit ${log.k[i]}) was never seen in the replica`);
    // A txid could appear in two objects only after a retried upload; the first sighting counts.
    let seen = s.seenUs;
    for (let m = j + 1; m < segs.length && segs[m]!.firstTxid <= txid; m++) seen = Math.min(seen, segs[m]!.seenUs);
    out.push((seen - log.endUs[i]!) / 1000);
  }
  return out;
}

export const round = (v: number, digits = 2): number => Math.round(v * 10 ** digits) / 10 ** digits;
export const MB = 1e6;
