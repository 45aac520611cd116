import { parseObjectKey } from '../../src/segment/object-names.js';
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { basename, dirname, join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { after } from 'node:test';
import { fileURLToPath } from 'node:url';
import { mapBounded } from '../../src/util/bounded.js';
import { openStorage } from '../../src/storage/open-storage.js';
import { restore } from '../../src/restore/restore.js';
import Database from 'better-sqlite3';
import { readSeq } from '../fixtures/app-schema.js';
import { digestDatabase } from '../fixtures/digest.js';

/** The CLI under test and the application stand-in, both resolved from the compiled test file. */
export const CLI_PATH = fileURLToPath(new URL('../../src/cli/main.js', import.meta.url));
export const WRITER_PATH = fileURLToPath(new URL('../fixtures/writer.js', import.meta.url));

// ---- CLI output shapes (the contract) ----

export interface GenerationInfo {
  id: string;
  snapshots: number;
  segments: number;
  bytes: number;
  firstTxid: number;
  lastTxid: number;
  firstCommitTimeMs: number;
  lastCommitTimeMs: number;
  firstCommitTime: string;
  lastCommitTime: string;
}

export interface ListOutput {
  replica: string;
  generations: GenerationInfo[];
}

export interface RestoreOutput {
  output: string;
  generation: string;
  txid: number;
  commitTime: string;
  commitTimeMs: number;
  snapshotTxid: number;
  segments: number;
  bytes: number;
  durationMs: number;
  phases: { planMs: number; applyMs: number; checkMs: number; syncMs: number };
}

export interface DryRunOutput {
  dryRun: true;
  generation: string;
  txid: number;
  commitTime: string;
  commitTimeMs: number;
  snapshot: { key: string; txid: number; size: number };
  segments: { key: string; firstTxid: number; lastTxid: number; size: number }[];
  bytes: number;
}

// ---- processes ----

export interface RunResult {
  args: readonly string[];
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  /** True when we had to kill the child because it outlived its time limit. */
  timedOut: boolean;
}

export interface SpawnedNode {
  child: ChildProcess;
  /** Settles when the child exits (never rejects). */
  result: Promise<RunResult>;
  /** Output so far (stderr keeps only its last 1 MiB). */
  output(): { stdout: string; stderr: string };
}

// Every child we spawn, so a crashing test does not leave agents running: killed by pid on exit.
const liveChildren = new Set<ChildProcess>();
process.on('exit', () => {
  for (const child of liveChildren) child.kill('SIGKILL');
});

/** Children must not believe they are node:test workers: that changes how they use stdout. */
export function childEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env, ...extra };
  delete env['NODE_TEST_CONTEXT'];
  return env;
}

const STDERR_KEEP = 1024 * 1024;

/** Runs `node script ...args`, killing it with SIGKILL after timeoutMs. */
export function spawnNode(
  script: string,
  args: readonly string[],
  opts: { timeoutMs: number; cwd?: string; env?: Record<string, string> },
): SpawnedNode {
  const child = spawn(process.execPath, [script, ...args], {
    cwd: opts.cwd,
    env: childEnv(opts.env),
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  liveChildren.add(child);
  let stdout = '';
  let stderr = '';
  let timedOut = false;
  child.stdout?.setEncoding('utf8').on('data', (s: string) => (stdout += s));
  child.stderr?.setEncoding('utf8').on('data', (s: string) => {
    stderr += s;
    if (stderr.length > 2 * STDERR_KEEP) stderr = stderr.slice(-STDERR_KEEP);
  });
  const timer = setTimeout(() => {
    timedOut = true;
    child.kill('SIGKILL');
  }, opts.timeoutMs);
  const result = new Promise<RunResult>((resolve) => {
    const finish = (code: number | null, signal: NodeJS.Signals | null): void => {
      clearTimeout(timer);
      liveChildren.delete(child);
      resolve({ args, code, signal, stdout, stderr, timedOut });
    };
    child.once('error', (err) => {
      stderr += `\n[spawn error] ${err.message}`;
      finish(null, null);
    });
    // 'close' rather than 'exit': all output has been read by then.
    child.once('close', finish);
  });
  return { child, result, output: () => ({ stdout, stderr }) };
}

/** `pitr ...args`, with a bounded run time; `env` is added to the child's environment. */
export function runCli(args: readonly string[], opts: { timeoutMs?: number; cwd?: string; env?: Record<string, string> } = {}): Promise<RunResult> {
  return spawnNode(CLI_PATH, args, {
    timeoutMs: opts.timeoutMs ?? 120_000,
    ...(opts.cwd ? { cwd: opts.cwd } : {}),
    ...(opts.env ? { env: opts.env } : {}),
  }).result;
}

/** One line per fact, for assertion messages. */
export function describeRun(r: RunResult): string {
  const clip = (s: string): string => (s.length > 4000 ? `${s.slice(0, 1000)}\n...\n${s.slice(-3000)}` : s);
  return [
    `pitr ${r.args.join(' ')}`,
    `  exit code ${String(r.code)}, signal ${String(r.signal)}${r.timedOut ? ' (killed: timed out)' : ''}`,
    `  stdout: ${clip(r.stdout.trimEnd())}`,
    `  stderr: ${clip(r.stderr.trimEnd())}`,
  ].join('\n');
}

/** Runs a command that must succeed and print one JSON document on stdout. */
export async function runCliJson<T>(args: readonly string[], opts: { timeoutMs?: number; env?: Record<string, string> } = {}): Promise<T> {
  const r = await runCli(args, opts);
  if (r.code !== 0) throw new Error(`command failed\n${describeRun(r)}`);
  try {
    return JSON.parse(r.stdout) as T;
  } catch {
    throw new Error(`stdout is not one JSON document\n${describeRun(r)}`);
  }
}

export interface CliError {
  message: string;
  code: string;
  hint: string | undefined;
}

/** Parses the contract's error format: `pitr: error: <message> [CODE]`, then maybe `  hint: ...`. */
export function parseCliError(stderr: string): CliError | undefined {
  const lines = stderr.split('\n');
  const m = /^pitr: error: (.*) \[([A-Z][A-Z0-9_]*)\]\s*$/.exec(lines[0] ?? '');
  if (m === null) return undefined;
  const h = /^ {2}hint: (.*)$/.exec(lines[1] ?? '');
  return { message: m[1] as string, code: m[2] as string, hint: h?.[1] };
}

/** Asserts a failed run with the given error code on stderr's first line; returns the parsed error. */
export function expectCliError(r: RunResult, code: string): CliError {
  if (r.timedOut) throw new Error(`expected ${code}, but the command hung\n${describeRun(r)}`);
  if (r.code === 0 || r.code === null) throw new Error(`expected failure ${code}\n${describeRun(r)}`);
  const err = parseCliError(r.stderr);
  if (err === undefined) throw new Error(`stderr does not start with "pitr: error: ... [${code}]"\n${describeRun(r)}`);
  if (err.code !== code) throw new Error(`expected ${code}, got ${err.code}\n${describeRun(r)}`);
  return err;
}

// ---- the agent ----

export interface Agent {
  child: ChildProcess;
  args: readonly string[];
  /** Settles when the agent exits. */
  result: Promise<RunResult>;
  output(): { stdout: string; stderr: string };
  /** Sends `signal` and waits for exit; SIGKILLs it (timedOut: true) if it outlives timeoutMs. */
  stop(signal?: NodeJS.Signals, timeoutMs?: number): Promise<RunResult>;
}

/**
 * Agents not yet exited. A test that fails before its agent.stop() would otherwise leave the agent
 * running, and the test file waiting on it, until the 15-minute limit: each file that imports
 * these helpers kills what is left when its tests are done.
 */
const liveAgents = new Set<ChildProcess>();
after(() => {
  for (const child of liveAgents) child.kill('SIGKILL');
});

/** `pitr replicate ...args` in the background; a safety limit kills it after 15 minutes. */
export function startAgent(args: readonly string[], opts: { env?: Record<string, string> } = {}): Agent {
  const fullArgs = ['replicate', ...args];
  const spawned = spawnNode(CLI_PATH, fullArgs, { timeoutMs: 15 * 60_000, ...(opts.env ? { env: opts.env } : {}) });
  let exited = false;
  liveAgents.add(spawned.child);
  void spawned.result.then(() => {
    exited = true;
    liveAgents.delete(spawned.child);
  });
  return {
    child: spawned.child,
    args: fullArgs,
    result: spawned.result,
    output: spawned.output,
    async stop(signal: NodeJS.Signals = 'SIGTERM', timeoutMs = 60_000): Promise<RunResult> {
      if (!exited) spawned.child.kill(signal);
      // Cancelled afterwards: a pending timer would keep the test process alive for timeoutMs.
      const cancel = new AbortController();
      const limit = sleep(timeoutMs, 'timeout' as const, { signal: cancel.signal }).catch(() => 'cancelled' as const);
      const first = await Promise.race([spawned.result, limit]);
      cancel.abort();
      if (first !== 'timeout' && first !== 'cancelled') return first;
      spawned.child.kill('SIGKILL');
      const r = await spawned.result;
      return { ...r, timedOut: true };
    },
  };
}

/** One line of the agent's JSON log (`--log-format json`): `msg` plus flat fields. */
export interface AgentLogEntry {
  time?: string;
  level?: string;
  msg: string;
  [field: string]: unknown;
}

/**
 * The agent's JSON log lines in `stderr`, in order. Lines that are not one JSON object with a
 * `msg` are skipped: a SIGKILL can cut the last line short.
 */
export function agentLogEntries(stderr: string): AgentLogEntry[] {
  const out: AgentLogEntry[] = [];
  for (const line of stderr.split('\n')) {
    if (!line.startsWith('{')) continue;
    try {
      const obj = JSON.parse(line) as unknown;
      if (typeof obj === 'object' && obj !== null && typeof (obj as { msg?: unknown }).msg === 'string') out.push(obj as AgentLogEntry);
    } catch {
      // a line cut short
    }
  }
  return out;
}

// ---- the application ----

export interface WriterOptions {
  db: string;
  log: string;
  count: number;
  seed: number;
  pauseEvery?: number;
  pauseMs?: number;
  checkpoints?: 'auto' | 'none';
  timeoutMs?: number;
}

/** Starts the writer fixture (a separate process, like a real app). */
export function startWriter(o: WriterOptions): SpawnedNode {
  const args = ['--db', o.db, '--log', o.log, '--count', String(o.count), '--seed', String(o.seed)];
  if (o.pauseEvery !== undefined) args.push('--pause-every', String(o.pauseEvery));
  if (o.pauseMs !== undefined) args.push('--pause-ms', String(o.pauseMs));
  if (o.checkpoints !== undefined) args.push('--checkpoints', o.checkpoints);
  return spawnNode(WRITER_PATH, args, { timeoutMs: o.timeoutMs ?? 5 * 60_000 });
}

// ---- waiting ----

/**
 * Polls `probe` until it returns a value other than undefined/false, and returns it. Throws after
 * timeoutMs, naming what it waited for and the last probe error. Only for waiting; never a
 * timing assertion.
 */
export async function waitUntil<T>(
  what: string,
  probe: () => Promise<T | undefined | false> | T | undefined | false,
  opts: { timeoutMs?: number; intervalMs?: number } = {},
): Promise<T> {
  const timeoutMs = opts.timeoutMs ?? 60_000;
  const deadline = Date.now() + timeoutMs;
  let lastError: unknown;
  for (;;) {
    try {
      const v = await probe();
      if (v !== undefined && v !== false) return v;
    } catch (err) {
      if (lastError === undefined) trace(`waiting for ${what}: ${err instanceof Error ? err.message : String(err)}`);
      lastError = err;
    }
    if (Date.now() > deadline) {
      const detail = lastError === undefined ? '' : `; last error: ${lastError instanceof Error ? lastError.message : String(lastError)}`;
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${detail}`);
    }
    await sleep(opts.intervalMs ?? 250);
  }
}

/** The library's bounded map (src/util/bounded.ts), under the name the tests have used. */
export const mapLimit = mapBounded;

/** Restore the latest state of the replica at `url` into `out` (in this process) and return it open, read-only. */
export async function restoreLatest(url: string, out: string): Promise<Database.Database> {
  const storage = await openStorage(url);
  try {
    await restore({ storage, output: out, target: { kind: 'latest' } });
  } finally {
    await storage.close();
  }
  return new Database(out, { readonly: true });
}

export type Settled<R> = { ok: true; value: R } | { ok: false; error: string };

/** Like mapLimit but runs every item and reports each outcome, so one assertion can list all failures. */
export async function settleLimit<T, R>(items: readonly T[], limit: number, fn: (item: T) => Promise<R>): Promise<Settled<R>[]> {
  return mapLimit(items, limit, async (item): Promise<Settled<R>> => {
    try {
      return { ok: true, value: await fn(item) };
    } catch (err) {
      return { ok: false, error: err instanceof Error ? err.message : String(err) };
    }
  });
}

/** Throws one error listing every failure (label: first line of each message), or returns the values. */
export function valuesOrFail<T, R>(what: string, items: readonly T[], settled: readonly Settled<R>[]): R[] {
  const failures = settled
    .map((s, i) => (s.ok ? undefined : `  ${String(items[i])}: ${s.error.split('\n').slice(0, 6).join(' | ').slice(0, 400)}`))
    .filter((f): f is string => f !== undefined);
  if (failures.length > 0) throw new Error(`${what}: ${failures.length} of ${items.length} failed\n${failures.join('\n')}`);
  return settled.map((s) => (s as { ok: true; value: R }).value);
}

// ---- files ----

export function makeTempDir(prefix = 'pitr-it-'): Promise<string> {
  return mkdtemp(join(tmpdir(), prefix));
}

/** Removes a temp dir, unless PITR_KEEP_TMP is set (to look at a failure's files). */
export async function removeTempDir(dir: string): Promise<void> {
  if (process.env['PITR_KEEP_TMP']) {
    process.stderr.write(`keeping ${dir}\n`);
    return;
  }
  await rm(dir, { recursive: true, force: true, maxRetries: 3 });
}

/** Every file under dir, as '/'-separated paths relative to dir, sorted. */
/** The txids of the catch-up steps in a directory replica, in order (from their keys). */
export function catchUpTxids(replicaDir: string, generation?: string): number[] {
  const txids: number[] = [];
  for (const key of listFilesRecursive(replicaDir)) {
    const name = parseObjectKey(key);
    if (name?.kind === 'segment' && name.catchUp && (generation === undefined || name.generation === generation)) txids.push(name.firstTxid);
  }
  return txids.sort((a, b) => a - b);
}

export function listFilesRecursive(dir: string): string[] {
  const out: string[] = [];
  const walk = (rel: string): void => {
    for (const e of readdirSync(join(dir, rel), { withFileTypes: true })) {
      const p = rel === '' ? e.name : `${rel}/${e.name}`;
      if (e.isDirectory()) walk(p);
      else out.push(p);
    }
  };
  if (existsSync(dir)) walk('');
  return out.sort();
}

/**
 * Entries in OUT's directory that look like OUT or a leftover of writing it (OUT.tmp, .OUT.123,
 * OUT-journal...). A failed restore must leave none.
 */
export function outputLeftovers(out: string): string[] {
  const dir = dirname(out);
  if (!existsSync(dir)) return [];
  const name = basename(out);
  return readdirSync(dir).filter((e) => e.includes(name) || /\.tmp/i.test(e));
}

// ---- databases ----

export interface DatabaseState {
  seq: number;
  digest: string;
  integrity: string;
  journalMode: string;
}

/** Opens a (restored) database read-only and reports what it holds. */
export function inspectDatabase(path: string): DatabaseState {
  const db = new Database(path, { readonly: true, fileMustExist: true });
  try {
    const integrity = (db.pragma('integrity_check') as { integrity_check: string }[]).map((r) => r.integrity_check).join('; ');
    return {
      seq: readSeq(db),
      digest: digestDatabase(db),
      integrity,
      journalMode: String(db.pragma('journal_mode', { simple: true })),
    };
  } finally {
    db.close();
  }
}

/** Integers from first to last inclusive, about n of them, evenly spread, always both ends. */
export function spread(first: number, last: number, n: number): number[] {
  if (last <= first) return [first];
  const out = new Set<number>([first, last]);
  for (let i = 1; i < n - 1; i++) out.add(first + Math.round(((last - first) * i) / (n - 1)));
  return [...out].sort((a, b) => a - b);
}

const traceStart = Date.now();
/** Progress lines on stderr when PITR_IT_DEBUG is set, to see where a slow or hung run spends time. */
export function trace(msg: string): void {
  if (process.env['PITR_IT_DEBUG']) process.stderr.write(`[it +${((Date.now() - traceStart) / 1000).toFixed(2)}s] ${msg}\n`);
}
