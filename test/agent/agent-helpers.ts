import { spawn } from 'node:child_process';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { createLogger, type Logger } from '../../src/log.js';
import { PitrError } from '../../src/errors.js';
import type { AgentStatus, ControlHandlers, SnapshotResult, SyncResult } from '../../src/agent/control-protocol.js';

/** A short temp dir: Unix socket paths must fit in about 107 bytes. */
export function shortTempDir(prefix: string): Promise<string> {
  return mkdtemp(join(tmpdir(), prefix));
}

export function quietLog(lines: string[] = []): Logger {
  return createLogger({ format: 'json', level: 'debug', write: (l) => lines.push(l) });
}

/** Waits (bounded) until cond() holds. */
export async function waitFor(cond: () => boolean | Promise<boolean>, what: string, limitMs = 20_000): Promise<void> {
  const end = Date.now() + limitMs;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(20);
  }
}

export interface FakeCalls {
  sync: { db: string | undefined; timeoutMs: number }[];
  snapshot: { db: string; timeoutMs: number }[];
}

/** Handlers of an agent that replicates `dbs`, each to one file replica; `behind` lists the dbs whose replica misses the sync. */
export function fakeHandlers(dbs: string[], opts: { behind?: string[] } = {}): { handlers: ControlHandlers; calls: FakeCalls } {
  const calls: FakeCalls = { sync: [], snapshot: [] };
  const unknown = (db: string): PitrError => new PitrError('DB_NOT_FOUND', `this agent does not replicate ${db}`, 'name a database it replicates');
  const handlers: ControlHandlers = {
    sync: async (db, timeoutMs) => {
      calls.sync.push({ db, timeoutMs });
      if (db !== undefined && !dbs.includes(db)) throw unknown(db);
      return (db === undefined ? dbs : [db]).map(
        (d): SyncResult => ({ db: d, txid: 42, replicas: [{ url: `file://${d}-replica`, txid: opts.behind?.includes(d) ? 40 : 42, ok: !opts.behind?.includes(d) }] }),
      );
    },
    snapshot: async (db, timeoutMs) => {
      calls.snapshot.push({ db, timeoutMs });
      if (!dbs.includes(db)) throw unknown(db);
      return { db, txid: 42, key: 'generations/0001/snapshots/42.snap', shipped: true } satisfies SnapshotResult;
    },
    status: (): AgentStatus => ({
      pid: process.pid,
      version: '0.0.0-test',
      startedAt: '2026-01-01T00:00:00.000Z',
      config: undefined,
      dbs: dbs.map((d) => ({ db: d, generation: '0000000000010000', txid: 42, replicas: [{ url: `file://${d}-replica`, txid: 41, lagSeconds: 1.5, healthy: true }] })),
    }),
    has: (db) => dbs.includes(db),
  };
  return { handlers, calls };
}

/**
 * A socket left behind by a killed agent: a real process listens on `path` and is SIGKILLed, so
 * the file stays and nothing answers. Returns the dead process's pid.
 */
export async function staleSocket(path: string): Promise<number> {
  const child = spawn(process.execPath, ['-e', "require('net').createServer().listen(process.argv[1], () => console.log('ready'))", path], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  await new Promise<void>((resolve, reject) => {
    child.stdout.on('data', (b: Buffer) => {
      if (b.toString().includes('ready')) resolve();
    });
    child.once('exit', () => reject(new Error('listener exited early')));
  });
  const gone = new Promise((r) => child.once('exit', r));
  child.kill('SIGKILL');
  await gone;
  return child.pid as number;
}
