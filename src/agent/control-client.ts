import { createConnection } from 'node:net';
import { readdir, unlink } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { PitrError, errnoCode, type ErrorCode } from '../errors.js';
import type { ControlRequest, ControlResponse } from './control-protocol.js';
import { checkSocketDir, defaultSocketDir, probeSocket } from './control-socket.js';

/** How long finding an agent waits for each one's answer to `has`. */
const FIND_TIMEOUT_MS = 5_000;

const START_HINT = 'start one with `pitr replicate`, or pass --socket PATH if it listens elsewhere';

/**
 * Send one request to the agent at `path` and return its result; the agent's error comes back as
 * a PitrError with the agent's code. Gives up (CONTROL_FAILED) after timeoutMs.
 */
export function request<T = unknown>(path: string, req: ControlRequest, timeoutMs: number): Promise<T> {
  return new Promise<T>((resolveReq, reject) => {
    const sock = createConnection(path);
    let buf = '';
    let settled = false;
    const finish = (fn: () => void): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      sock.destroy();
      fn();
    };
    const timer = setTimeout(
      () =>
        finish(() =>
          reject(
            new PitrError('CONTROL_FAILED', `the agent at ${path} did not answer "${req.op}" within ${Math.round(timeoutMs / 1000)}s`, 'check the agent\'s log; a longer --timeout may help'),
          ),
        ),
      timeoutMs,
    );
    sock.setEncoding('utf8');
    sock.once('connect', () => sock.write(JSON.stringify(req) + '\n'));
    sock.on('data', (chunk: string) => {
      buf += chunk;
      const nl = buf.indexOf('\n');
      if (nl >= 0) finish(() => settle(buf.slice(0, nl), path, resolveReq, reject));
    });
    sock.on('end', () => finish(() => settle(buf, path, resolveReq, reject)));
    sock.on('error', (err) => finish(() => reject(connectError(err, path))));
  });
}

function settle<T>(line: string, path: string, ok: (v: T) => void, fail: (e: unknown) => void): void {
  if (line.trim() === '') {
    fail(new PitrError('CONTROL_FAILED', `the agent at ${path} closed the connection without an answer`, "it may be shutting down; check the agent's log"));
    return;
  }
  let res: ControlResponse;
  try {
    res = JSON.parse(line) as ControlResponse;
  } catch (err) {
    fail(new PitrError('CONTROL_FAILED', `the agent at ${path} answered something that is not JSON`, 'is that socket a pitr agent? pass the right one with --socket', { cause: err }));
    return;
  }
  if (res.ok) {
    ok(res.result as T);
    return;
  }
  const { code, message, hint } = res.error;
  // INTERNAL is not a code a user can act on: the message says it was the agent that failed.
  if (code === 'INTERNAL') fail(new PitrError('CONTROL_FAILED', `the agent at ${path} failed: ${message}`, hint));
  else fail(new PitrError(code as ErrorCode, message, hint));
}

function connectError(err: unknown, path: string): PitrError {
  const code = errnoCode(err);
  if (code === 'ENOENT' || code === 'ECONNREFUSED') {
    return new PitrError('AGENT_NOT_RUNNING', `no agent answers on ${path}`, START_HINT, { cause: err });
  }
  if (code === 'EACCES' || code === 'EPERM') {
    return new PitrError('PERMISSION_DENIED', `cannot connect to ${path}: permission denied`, 'run as the user the agent runs as', { cause: err });
  }
  if (code === 'ECONNRESET' || code === 'EPIPE') {
    return new PitrError('CONTROL_FAILED', `the agent at ${path} closed the connection without an answer`, "it may be shutting down; check the agent's log", { cause: err });
  }
  return new PitrError('CONTROL_FAILED', `cannot talk to the agent at ${path}: ${(err as Error).message}`, "check the agent's log", { cause: err });
}

/**
 * The control socket of the one agent to ask: `socket` when given; otherwise the one live agent
 * in the default directory that replicates `db` (any live agent when db is not given).
 * Sockets left by killed agents are removed on the way.
 */
export async function findAgent(opts: { socket?: string; db?: string }): Promise<string> {
  if (opts.socket !== undefined) return resolve(opts.socket);
  const dir = defaultSocketDir();
  let names: string[];
  try {
    names = (await readdir(dir)).filter((n) => n.endsWith('.sock')).sort();
  } catch (err) {
    if (errnoCode(err) === 'ENOENT') throw notRunning(opts.db, dir);
    throw err;
  }
  // A socket planted by another user in a directory they control is not asked anything.
  await checkSocketDir(dir);

  const matches: string[] = [];
  const unanswered: string[] = [];
  let live = 0;
  for (const name of names) {
    const path = join(dir, name);
    const state = await probeSocket(path).catch(() => 'unreachable' as const);
    if (state === 'absent') continue;
    if (state === 'stale' || state === 'unreachable') {
      if (state === 'stale' && !pidAlive(name)) await unlink(path).catch(() => undefined);
      continue;
    }
    live++;
    if (opts.db === undefined) {
      matches.push(path);
      continue;
    }
    try {
      if (await request<boolean>(path, { op: 'has', db: opts.db }, FIND_TIMEOUT_MS)) matches.push(path);
    } catch {
      unanswered.push(path);
    }
  }

  if (matches.length === 1) return matches[0] as string;
  if (matches.length > 1) {
    const what = opts.db === undefined ? 'several agents are running' : `several agents replicate ${opts.db}`;
    throw new PitrError('USAGE', `${what}: ${matches.join(', ')}`, 'choose one with --socket PATH');
  }
  if (unanswered.length > 0) {
    throw new PitrError(
      'CONTROL_FAILED',
      `no agent answered that it replicates ${opts.db}; ${unanswered.length === 1 ? 'one' : unanswered.length} did not answer: ${unanswered.join(', ')}`,
      "check that agent's log, or pass its socket with --socket",
    );
  }
  if (live > 0) {
    throw new PitrError(
      'AGENT_NOT_RUNNING',
      `none of the ${live === 1 ? 'one running agent' : `${live} running agents`} replicates ${opts.db} (looked in ${dir})`,
      'agents name databases by absolute path: `pitr agent status --socket PATH` lists them; or start one for it with `pitr replicate`',
    );
  }
  throw notRunning(opts.db, dir);
}

function notRunning(db: string | undefined, dir: string): PitrError {
  const what = db === undefined ? 'no pitr agent is running' : `no running pitr agent replicates ${db}`;
  return new PitrError('AGENT_NOT_RUNNING', `${what} (looked in ${dir})`, START_HINT);
}

/** False only when the socket is named by a pid and that process is gone. */
function pidAlive(name: string): boolean {
  const pid = Number(name.slice(0, -'.sock'.length));
  if (!Number.isSafeInteger(pid) || pid <= 0) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return errnoCode(err) === 'EPERM';
  }
}
