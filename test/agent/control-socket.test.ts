import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createConnection } from 'node:net';
import { chmod, chown, mkdir, rm, stat, writeFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { isPitrError } from '../../src/errors.js';
import { defaultSocketDir, startControlServer, type ControlServer } from '../../src/agent/control-socket.js';
import { findAgent, request } from '../../src/agent/control-client.js';
import type { AgentStatus, SnapshotResult, SyncResult } from '../../src/agent/control-protocol.js';
import { fakeHandlers, quietLog, shortTempDir, staleSocket } from './agent-helpers.js';

let root: string;
const servers: ControlServer[] = [];

before(async () => {
  root = await shortTempDir('pitr-ctl-');
  // Never see a real agent of this host.
  process.env['XDG_RUNTIME_DIR'] = join(root, 'run');
  await mkdir(join(root, 'run'), { mode: 0o700 });
});
after(async () => {
  for (const s of servers) await s.close();
  await rm(root, { recursive: true, force: true });
});

async function serve(path: string | undefined, dbs: string[]): Promise<{ server: ControlServer; calls: ReturnType<typeof fakeHandlers>['calls'] }> {
  const { handlers, calls } = fakeHandlers(dbs);
  const server = await startControlServer(path, handlers, quietLog());
  servers.push(server);
  return { server, calls };
}

/** Send raw bytes, return the answer line (parsed). */
function raw(path: string, data: string): Promise<{ ok: boolean; error?: { code: string; message: string } }> {
  return new Promise((resolve, reject) => {
    const sock = createConnection(path);
    let buf = '';
    sock.setEncoding('utf8');
    sock.on('connect', () => sock.write(data));
    sock.on('data', (c: string) => (buf += c));
    // The server may close while a large request is still being written: the answer counts.
    sock.on('error', () => undefined);
    sock.on('close', () => {
      try {
        resolve(JSON.parse(buf.split('\n')[0] ?? ''));
      } catch (err) {
        reject(new Error(`no JSON answer: ${JSON.stringify(buf)} (${String(err)})`));
      }
    });
  });
}

async function rejectsWith(p: Promise<unknown>, code: string, re?: RegExp): Promise<Error> {
  const err = await p.then(
    () => assert.fail(`expected ${code}`),
    (e: unknown) => e as Error,
  );
  assert.ok(isPitrError(err), `not a PitrError: ${String(err)}`);
  assert.equal(err.code, code, err.message);
  if (re) assert.match(err.message, re);
  return err;
}

describe('control socket', () => {
  it('answers each op over the real socket', async () => {
    const path = join(root, 'ops.sock');
    const { server, calls } = await serve(path, ['/data/a.db', '/data/b.db']);
    assert.equal(server.path, path);

    const status = await request<AgentStatus>(path, { op: 'status' }, 5000);
    assert.deepEqual(status.dbs.map((d) => d.db), ['/data/a.db', '/data/b.db']);
    assert.equal(await request<boolean>(path, { op: 'has', db: '/data/a.db' }, 5000), true);
    assert.equal(await request<boolean>(path, { op: 'has', db: '/data/c.db' }, 5000), false);

    const all = await request<SyncResult[]>(path, { op: 'sync' }, 5000);
    assert.deepEqual(all.map((r) => r.db), ['/data/a.db', '/data/b.db']);
    const one = await request<SyncResult[]>(path, { op: 'sync', db: '/data/b.db', timeoutMs: 1234 }, 5000);
    assert.deepEqual(one.map((r) => [r.db, r.txid, r.replicas[0]?.ok]), [['/data/b.db', 42, true]]);
    assert.deepEqual(calls.sync, [
      { db: undefined, timeoutMs: 60_000 },
      { db: '/data/b.db', timeoutMs: 1234 },
    ]);

    const snap = await request<SnapshotResult>(path, { op: 'snapshot', db: '/data/a.db', timeoutMs: 5 }, 5000);
    assert.equal(snap.shipped, true);
    assert.deepEqual(calls.snapshot, [{ db: '/data/a.db', timeoutMs: 5 }]);
  });

  it("brings a handler's PitrError to the client with its code and hint", async () => {
    const path = join(root, 'err.sock');
    await serve(path, ['/data/a.db']);
    const err = await rejectsWith(request(path, { op: 'snapshot', db: '/data/zzz.db' }, 5000), 'DB_NOT_FOUND', /zzz\.db/);
    assert.equal((err as { hint?: string }).hint, 'name a database it replicates');
  });

  it('a handler that throws something else arrives as CONTROL_FAILED', async () => {
    const path = join(root, 'bug.sock');
    const { handlers } = fakeHandlers([]);
    handlers.status = () => {
      throw new TypeError('boom');
    };
    servers.push(await startControlServer(path, handlers, quietLog()));
    await rejectsWith(request(path, { op: 'status' }, 5000), 'CONTROL_FAILED', /boom/);
  });

  it('answers garbage and oversized requests with an error and keeps serving', async () => {
    const path = join(root, 'junk.sock');
    await serve(path, ['/data/a.db']);
    const junk = await raw(path, 'this is not json\n');
    assert.equal(junk.ok, false);
    assert.equal(junk.error?.code, 'CONTROL_FAILED');
    const unknownOp = await raw(path, '{"op":"drop-tables"}\n');
    assert.equal(unknownOp.ok, false);
    assert.match(unknownOp.error?.message ?? '', /drop-tables/);
    const big = await raw(path, 'x'.repeat(70 * 1024));
    assert.equal(big.ok, false);
    assert.match(big.error?.message ?? '', /larger than/);
    // A request without its newline, the client's side ended: still answered.
    const halfClosed = await new Promise<string>((resolve, reject) => {
      const sock = createConnection(path, () => sock.end('{"op":"has","db":"/data/a.db"}'));
      let buf = '';
      sock.on('data', (c) => (buf += String(c)));
      sock.on('close', () => resolve(buf));
      sock.on('error', reject);
    });
    assert.deepEqual(JSON.parse(halfClosed), { ok: true, result: true });
    assert.equal(await request<boolean>(path, { op: 'has', db: '/data/a.db' }, 5000), true);
  });

  it('closes a connection that never sends its request', async () => {
    const path = join(root, 'idle.sock');
    const { handlers } = fakeHandlers([]);
    servers.push(await startControlServer(path, handlers, quietLog(), { requestIdleMs: 200 }));
    const closed = await new Promise<string>((resolve, reject) => {
      const sock = createConnection(path);
      let buf = '';
      sock.on('data', (c) => (buf += String(c)));
      sock.on('error', reject);
      sock.on('close', () => resolve(buf));
    });
    assert.equal(closed, '', 'closed without an answer');
  });

  it('answers a request still running when the agent closes the socket with ABORTED', async () => {
    const path = join(root, 'slow.sock');
    const { handlers } = fakeHandlers(['/data/a.db']);
    let started!: () => void;
    const running = new Promise<void>((r) => (started = r));
    handlers.sync = () => {
      started();
      return new Promise(() => undefined);
    };
    const server = await startControlServer(path, handlers, quietLog());
    const pending = request(path, { op: 'sync', timeoutMs: 600_000 }, 600_000);
    const refused = rejectsWith(pending, 'ABORTED', /shutting down/);
    await running;
    await server.close();
    await refused;
    assert.equal(existsSync(path), false);
  });

  it('replaces a socket left by a killed agent', async () => {
    const path = join(root, 'stale.sock');
    await staleSocket(path);
    assert.ok(existsSync(path));
    await serve(path, ['/data/a.db']);
    assert.equal(await request<boolean>(path, { op: 'has', db: '/data/a.db' }, 5000), true);
  });

  it('refuses a socket another agent answers on, naming it', async () => {
    const path = join(root, 'live.sock');
    await serve(path, ['/data/a.db']);
    await rejectsWith(serve(path, ['/data/b.db']), 'CONTROL_SOCKET_IN_USE', /live\.sock/);
    // The first agent keeps its socket.
    assert.equal(await request<boolean>(path, { op: 'has', db: '/data/a.db' }, 5000), true);
  });

  it('refuses a path that is a regular file, and leaves the file alone', async () => {
    const path = join(root, 'plain.sock');
    await writeFile(path, 'precious');
    await rejectsWith(serve(path, []), 'CONTROL_SOCKET_IN_USE', /not a socket/);
    assert.ok(existsSync(path));
  });

  it('defaults to <XDG_RUNTIME_DIR>/pitr/<pid>.sock: directory 0700, socket 0600, removed on close', async () => {
    const { server } = await serve(undefined, ['/data/a.db']);
    assert.equal(server.path, join(root, 'run', 'pitr', `${process.pid}.sock`));
    assert.equal(defaultSocketDir(), join(root, 'run', 'pitr'));
    assert.equal((await stat(join(root, 'run', 'pitr'))).mode & 0o777, 0o700);
    assert.equal((await stat(server.path)).mode & 0o777, 0o600);
    await server.close();
    assert.equal(existsSync(server.path), false);
    await server.close(); // twice is harmless
  });

  it('creates a missing directory of an explicit path 0700', async () => {
    const { server } = await serve(join(root, 'made', 'here', 'a.sock'), []);
    assert.equal((await stat(join(root, 'made', 'here'))).mode & 0o777, 0o700);
    assert.equal((await stat(server.path)).mode & 0o777, 0o600);
  });

  it('refuses a directory others can write, or another user owns', async () => {
    const open = join(root, 'open');
    await mkdir(open);
    await chmod(open, 0o777);
    await rejectsWith(serve(join(open, 'a.sock'), []), 'CONTROL_SOCKET_UNSAFE', /writable by others/);
    const group = join(root, 'group');
    await mkdir(group);
    await chmod(group, 0o770);
    await rejectsWith(serve(join(group, 'a.sock'), []), 'CONTROL_SOCKET_UNSAFE', /writable by others/);
    if (process.getuid?.() === 0) {
      const theirs = join(root, 'theirs');
      await mkdir(theirs, { mode: 0o700 });
      await chown(theirs, 4242, 4242);
      await rejectsWith(serve(join(theirs, 'a.sock'), []), 'CONTROL_SOCKET_UNSAFE', /belongs to uid 4242/);
    }
  });
});

describe('findAgent', () => {
  it('picks the agent that has the database, skips and removes stale sockets, none is AGENT_NOT_RUNNING', async () => {
    const dir = defaultSocketDir();
    await mkdir(dir, { recursive: true, mode: 0o700 });
    // Whatever earlier tests left in the default directory goes first.
    await rm(join(dir, `${process.pid}.sock`), { force: true });
    const a = join(dir, '1000001.sock');
    const b = join(dir, '1000002.sock');
    const before = await serve(a, ['/srv/one.db']);
    await serve(b, ['/srv/two.db', '/srv/three.db']);
    const deadPid = await staleSocket(join(dir, 'pending.sock'));
    const stale = join(dir, `${deadPid}.sock`);
    await staleSocket(stale);

    assert.equal(await findAgent({ db: '/srv/two.db' }), b);
    assert.equal(await findAgent({ db: '/srv/one.db' }), a);
    assert.equal(existsSync(stale), false, 'the stale socket of a dead pid is removed');
    await rejectsWith(findAgent({ db: '/srv/none.db' }), 'AGENT_NOT_RUNNING', /none of the 2 running agents replicates \/srv\/none\.db/);
    const several = await rejectsWith(findAgent({}), 'USAGE', /several agents/);
    assert.match(several.message, /1000001\.sock/);
    assert.match(several.message, /1000002\.sock/);
    assert.equal(await findAgent({ socket: join(root, 'x', '..', 'explicit.sock') }), join(root, 'explicit.sock'));

    await before.server.close();
    assert.equal(await findAgent({}), b, 'the one agent left');
  });

  it('is AGENT_NOT_RUNNING when the default directory does not exist', async () => {
    const saved = process.env['XDG_RUNTIME_DIR'];
    process.env['XDG_RUNTIME_DIR'] = join(root, 'nowhere');
    try {
      await rejectsWith(findAgent({ db: '/srv/one.db' }), 'AGENT_NOT_RUNNING');
    } finally {
      process.env['XDG_RUNTIME_DIR'] = saved;
    }
  });

  it('request to a socket nobody listens on is AGENT_NOT_RUNNING', async () => {
    await rejectsWith(request(join(root, 'absent.sock'), { op: 'status' }, 5000), 'AGENT_NOT_RUNNING', /absent\.sock/);
  });
});
