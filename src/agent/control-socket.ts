import { createConnection, createServer, type Server, type Socket } from 'node:net';
import { chmod, lstat, mkdir, stat, unlink } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { PitrError, errnoCode } from '../errors.js';
import type { Logger } from '../log.js';
import type { ControlHandlers, ControlRequest, ControlResponse } from './control-protocol.js';

/** A request line longer than this is refused: every legitimate request is a few hundred bytes. */
export const MAX_REQUEST_BYTES = 64 * 1024;
/** A connection that has not sent its request line by then is closed (it holds a descriptor). */
const REQUEST_IDLE_MS = 10_000;
/** What sync and snapshot wait when the request names no timeout. */
export const DEFAULT_CONTROL_TIMEOUT_MS = 60_000;

export interface ControlServer {
  path: string;
  close(): Promise<void>;
}

/**
 * The directory holding one socket per agent on this host: `$XDG_RUNTIME_DIR/pitr` (a per-user
 * tmpfs the login manager creates 0700) when set, else `<tmpdir>/pitr-<uid>`.
 */
export function defaultSocketDir(): string {
  const xdg = process.env['XDG_RUNTIME_DIR'];
  if (xdg) return join(xdg, 'pitr');
  return join(tmpdir(), `pitr-${process.getuid?.() ?? 'user'}`);
}

/** This process's socket in the default directory: named by pid, so agents never collide. */
export function defaultSocketPath(pid = process.pid): string {
  return join(defaultSocketDir(), `${pid}.sock`);
}

/**
 * Refuse a directory another user could plant a socket in, or read ours from: the socket is the
 * agent's remote control (sync, snapshot), and its status names every database.
 */
export async function checkSocketDir(dir: string): Promise<void> {
  const st = await stat(dir);
  if (!st.isDirectory()) {
    throw new PitrError('CONTROL_SOCKET_UNSAFE', `control socket directory ${dir} is not a directory`, 'choose another path with --socket');
  }
  const uid = process.getuid?.();
  if (uid !== undefined && st.uid !== uid) {
    throw new PitrError(
      'CONTROL_SOCKET_UNSAFE',
      `control socket directory ${dir} belongs to uid ${st.uid}, not to this user (uid ${uid})`,
      `remove ${dir} if nothing uses it, or choose a directory of your own with --socket`,
    );
  }
  if ((st.mode & 0o022) !== 0) {
    throw new PitrError(
      'CONTROL_SOCKET_UNSAFE',
      `control socket directory ${dir} is writable by others (mode ${(st.mode & 0o777).toString(8).padStart(4, '0')})`,
      `run chmod 700 ${dir}, or choose a directory only you can write with --socket`,
    );
  }
}

/** Create the socket's directory owner-only when pitr is the one creating it, then check it. */
async function prepareSocketDir(dir: string): Promise<void> {
  try {
    await stat(dir);
  } catch (err) {
    if (errnoCode(err) !== 'ENOENT') throw err;
    await mkdir(dir, { recursive: true, mode: 0o700 });
    // mkdir's mode passes through the umask, which can only remove bits: chmod states it exactly.
    await chmod(dir, 0o700);
  }
  await checkSocketDir(dir);
}

/** 'live' when something accepts a connection at path, 'stale' when the file refuses, 'absent'. */
export function probeSocket(path: string): Promise<'live' | 'stale' | 'absent'> {
  return new Promise((resolveProbe, reject) => {
    const sock = createConnection(path);
    sock.once('connect', () => {
      sock.destroy();
      resolveProbe('live');
    });
    sock.once('error', (err) => {
      const code = errnoCode(err);
      if (code === 'ECONNREFUSED' || code === 'ENOTSOCK') resolveProbe('stale');
      else if (code === 'ENOENT') resolveProbe('absent');
      // A full backlog: an agent is there, just busy.
      else if (code === 'EAGAIN') resolveProbe('live');
      else reject(err);
    });
  });
}

/**
 * Listen on the agent's control socket (owner-only, 0600, in a directory of this user's only).
 * A socket left by a killed agent is replaced; one an agent answers on is refused.
 */
export async function startControlServer(
  path: string | undefined,
  handlers: ControlHandlers,
  log: Logger,
  opts: { requestIdleMs?: number } = {},
): Promise<ControlServer> {
  const socketPath = path === undefined ? defaultSocketPath() : resolve(path);
  await prepareSocketDir(dirname(socketPath));

  const open = new Set<Socket>();
  // Half-open: a client may end its side after the request and still read the answer.
  const server = createServer({ allowHalfOpen: true }, (sock) => serveConnection(sock, handlers, log, open, opts.requestIdleMs ?? REQUEST_IDLE_MS));
  await listenOnce(server, socketPath);
  // The directory is already 0700; the mode on the socket is the second lock, for explicit paths
  // in directories others may list.
  await chmod(socketPath, 0o600);
  const { ino } = await stat(socketPath);
  log.info('control socket listening', { socket: socketPath });

  let closed: Promise<void> | undefined;
  return {
    path: socketPath,
    close: () =>
      (closed ??= (async () => {
        const done = new Promise<void>((r) => server.close(() => r()));
        for (const sock of open) answer(sock, { ok: false, error: { code: 'ABORTED', message: 'the agent is shutting down' } });
        await done;
        // libuv removes the file on close; only a file still ours may go, never a successor's.
        try {
          if ((await stat(socketPath)).ino === ino) await unlink(socketPath);
        } catch (err) {
          if (errnoCode(err) !== 'ENOENT') log.warn('could not remove the control socket', { socket: socketPath, error: err });
        }
      })()),
  };
}

async function listenOnce(server: Server, path: string): Promise<void> {
  try {
    await listen(server, path);
    return;
  } catch (err) {
    if (errnoCode(err) !== 'EADDRINUSE') throw wrapListenError(err, path);
  }
  const st = await lstat(path);
  if (!st.isSocket()) {
    throw new PitrError('CONTROL_SOCKET_IN_USE', `control socket path ${path} exists and is not a socket`, 'choose another path with --socket; pitr does not remove files it did not create');
  }
  if ((await probeSocket(path)) === 'live') {
    throw new PitrError(
      'CONTROL_SOCKET_IN_USE',
      `another agent answers on the control socket ${path}`,
      'stop that agent first, or give this one its own path with --socket',
    );
  }
  // Left by an agent that was killed (SIGKILL, power loss): nothing listens, so it can go.
  await unlink(path).catch((err: unknown) => {
    if (errnoCode(err) !== 'ENOENT') throw err;
  });
  try {
    await listen(server, path);
  } catch (err) {
    if (errnoCode(err) === 'EADDRINUSE') {
      throw new PitrError('CONTROL_SOCKET_IN_USE', `another agent took the control socket ${path} while this one started`, 'give each agent its own path with --socket');
    }
    throw wrapListenError(err, path);
  }
}

function listen(server: Server, path: string): Promise<void> {
  return new Promise((resolveListen, reject) => {
    const onError = (err: Error): void => reject(err);
    server.once('error', onError);
    server.listen(path, () => {
      server.off('error', onError);
      resolveListen();
    });
  });
}

function wrapListenError(err: unknown, path: string): PitrError {
  const code = errnoCode(err);
  if (code === 'EACCES' || code === 'EPERM') {
    return new PitrError('PERMISSION_DENIED', `cannot create the control socket ${path}: permission denied`, 'choose a directory you can write with --socket', { cause: err });
  }
  if (code === 'ENAMETOOLONG' || code === 'EINVAL') {
    // sun_path holds about 107 bytes: deep temp directories overflow it.
    return new PitrError('CONTROL_FAILED', `cannot create the control socket ${path}: the path is too long for a Unix socket`, 'choose a shorter path with --socket', { cause: err });
  }
  return new PitrError('CONTROL_FAILED', `cannot create the control socket ${path}: ${(err as Error).message}`, 'choose another path with --socket', { cause: err });
}

function serveConnection(sock: Socket, handlers: ControlHandlers, log: Logger, open: Set<Socket>, idleMs: number): void {
  open.add(sock);
  sock.on('close', () => open.delete(sock));
  // A client that goes away mid-answer is its own business, not the agent's.
  sock.on('error', () => sock.destroy());
  sock.setTimeout(idleMs, () => sock.destroy());

  let buf = '';
  let got = false;
  const take = (line: string): void => {
    if (got) return;
    got = true;
    // sync and snapshot run as long as their timeoutMs: the idle limit is for the request only.
    sock.setTimeout(0);
    void handle(line, handlers).then(
      (res) => answer(sock, res),
      (err: unknown) => {
        // A PitrError is an answer (a database this agent does not replicate); anything else is a bug.
        if (err instanceof PitrError) log.info('control request refused', { error: err });
        else log.error('control request failed', { error: err });
        answer(sock, errorResponse(err));
      },
    );
  };
  sock.setEncoding('utf8');
  sock.on('data', (chunk: string) => {
    if (got) return;
    buf += chunk;
    const nl = buf.indexOf('\n');
    if (nl >= 0 && nl <= MAX_REQUEST_BYTES) return take(buf.slice(0, nl));
    if (Buffer.byteLength(buf) > MAX_REQUEST_BYTES) {
      got = true;
      answer(sock, { ok: false, error: { code: 'CONTROL_FAILED', message: `control request larger than ${MAX_REQUEST_BYTES} bytes`, hint: 'send one JSON request line' } });
    }
  });
  // A client that half-closes instead of sending a newline still gets its answer; one that sent
  // nothing (a probe: is an agent there?) gets none.
  sock.on('end', () => {
    if (got) return;
    if (buf.trim() === '') sock.destroy();
    else take(buf);
  });
}

function answer(sock: Socket, res: ControlResponse): void {
  if (sock.destroyed || !sock.writable) return;
  // Closed once written, whatever the client does, so that close() never waits on a client.
  sock.end(JSON.stringify(res) + '\n', () => sock.destroy());
}

async function handle(line: string, h: ControlHandlers): Promise<ControlResponse> {
  let raw: unknown;
  try {
    raw = JSON.parse(line);
  } catch {
    return badRequest('the control request is not JSON');
  }
  const req = parseRequest(raw);
  if (typeof req === 'string') return badRequest(req);
  switch (req.op) {
    case 'sync':
      return { ok: true, result: await h.sync(req.db, req.timeoutMs ?? DEFAULT_CONTROL_TIMEOUT_MS) };
    case 'snapshot':
      return { ok: true, result: await h.snapshot(req.db, req.timeoutMs ?? DEFAULT_CONTROL_TIMEOUT_MS) };
    case 'status':
      return { ok: true, result: h.status() };
    case 'has':
      return { ok: true, result: h.has(req.db) };
  }
}

/** The request, or what is wrong with it. */
function parseRequest(raw: unknown): ControlRequest | string {
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) return 'the control request is not a JSON object';
  const r = raw as Record<string, unknown>;
  const db = r['db'];
  const timeoutMs = r['timeoutMs'];
  if (db !== undefined && (typeof db !== 'string' || db === '')) return '"db" must be a non-empty string';
  if (timeoutMs !== undefined && (typeof timeoutMs !== 'number' || !Number.isFinite(timeoutMs) || timeoutMs < 0)) {
    return '"timeoutMs" must be a number of 0 or more';
  }
  switch (r['op']) {
    case 'sync':
      return { op: 'sync', db: db as string | undefined, timeoutMs: timeoutMs as number | undefined };
    case 'snapshot':
      if (db === undefined) return '"snapshot" needs "db"';
      return { op: 'snapshot', db: db as string, timeoutMs: timeoutMs as number | undefined };
    case 'status':
      return { op: 'status' };
    case 'has':
      if (db === undefined) return '"has" needs "db"';
      return { op: 'has', db: db as string };
    default:
      return `unknown control op ${JSON.stringify(r['op'])} (expected sync, snapshot, status or has)`;
  }
}

function badRequest(message: string): ControlResponse {
  return { ok: false, error: { code: 'CONTROL_FAILED', message, hint: 'this client and agent may be different pitr versions; use the same one' } };
}

function errorResponse(err: unknown): ControlResponse {
  if (err instanceof PitrError) {
    return { ok: false, error: { code: err.code, message: err.message, ...(err.hint === undefined ? {} : { hint: err.hint }) } };
  }
  return { ok: false, error: { code: 'INTERNAL', message: (err as Error)?.message ?? String(err), hint: "this is a bug in pitr; please report it with the agent's log" } };
}
