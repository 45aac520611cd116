import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { startControlServer, type ControlServer } from '../../src/agent/control-socket.js';
import { fakeHandlers, quietLog, shortTempDir } from './agent-helpers.js';

const CLI = fileURLToPath(new URL('../../src/cli/main.js', import.meta.url));

let root: string;
let runDir: string;
const servers: ControlServer[] = [];

before(async () => {
  root = await shortTempDir('pitr-cli-');
  runDir = join(root, 'run');
  await mkdir(runDir, { mode: 0o700 });
});
after(async () => {
  for (const s of servers) await s.close();
  await rm(root, { recursive: true, force: true });
});

/** Run the CLI asynchronously, so that this process's test server can answer it. */
function pitr(args: string[], cwd = root): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    // A temp XDG_RUNTIME_DIR: the CLI never sees a real agent of this host.
    const child = spawn(process.execPath, [CLI, ...args], { cwd, env: { ...process.env, XDG_RUNTIME_DIR: runDir }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (b) => (stdout += String(b)));
    child.stderr.on('data', (b) => (stderr += String(b)));
    child.once('close', (code) => resolve({ code, stdout, stderr }));
  });
}

describe('pitr sync / snapshot / agent status', () => {
  it('agent status --socket prints the databases and replicas of the agent', async () => {
    const { handlers } = fakeHandlers(['/srv/app/app.db']);
    const server = await startControlServer(join(root, 'st.sock'), handlers, quietLog());
    servers.push(server);
    const r = await pitr(['agent', 'status', '--socket', server.path]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /\/srv\/app\/app\.db/);
    assert.match(r.stdout, /generation 0000000000010000\s+txid 42/);
    assert.match(r.stdout, /file:\/\/\/srv\/app\/app\.db-replica\s+txid 41\s+lag 1\.5s\s+healthy/);

    const j = await pitr(['agent', 'status', '--socket', server.path, '--json']);
    assert.equal(j.code, 0, j.stderr);
    const parsed = JSON.parse(j.stdout) as { socket: string; dbs: { db: string }[] };
    assert.equal(parsed.socket, server.path);
    assert.deepEqual(parsed.dbs.map((d) => d.db), ['/srv/app/app.db']);
  });

  it('sync with no agent running exits 1 with AGENT_NOT_RUNNING', async () => {
    const r = await pitr(['sync', 'app.db']);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /\[AGENT_NOT_RUNNING\]/);
    assert.match(r.stderr, /hint: .*pitr replicate/);
    const s = await pitr(['agent', 'status']);
    assert.equal(s.code, 1);
    assert.match(s.stderr, /\[AGENT_NOT_RUNNING\]/);
  });

  it('sync finds the agent by the database (a relative DB made absolute), exit 0 when every replica reached the txid, 1 otherwise', async () => {
    const dbDir = join(root, 'data');
    await mkdir(dbDir);
    const caught = join(dbDir, 'caught.db');
    const behind = join(dbDir, 'behind.db');
    const { handlers, calls } = fakeHandlers([caught, behind], { behind: [behind] });
    // In the default directory, as an agent started without --socket would be.
    const server = await startControlServer(join(runDir, 'pitr', '1000001.sock'), handlers, quietLog());
    servers.push(server);

    const ok = await pitr(['sync', 'caught.db', '--timeout', '5s'], dbDir);
    assert.equal(ok.code, 0, ok.stderr);
    assert.match(ok.stdout, /caught\.db\s+txid 42/);
    assert.match(ok.stdout, /caught\.db-replica\s+txid 42\s+ok/);
    assert.deepEqual(calls.sync, [{ db: caught, timeoutMs: 5000 }]);

    const late = await pitr(['sync', '--json'], dbDir);
    assert.equal(late.code, 1);
    const parsed = JSON.parse(late.stdout) as { ok: boolean; dbs: { db: string }[] };
    assert.equal(parsed.ok, false);
    assert.deepEqual(parsed.dbs.map((d) => d.db), [caught, behind]);

    const snap = await pitr(['snapshot', 'behind.db'], dbDir);
    assert.equal(snap.code, 0, snap.stderr);
    assert.match(snap.stdout, /snapshot at txid 42.*shipped/);

    const unknown = await pitr(['snapshot', 'other.db'], dbDir);
    assert.equal(unknown.code, 1);
    assert.match(unknown.stderr, /none of the one running agent replicates .*other\.db .*\[AGENT_NOT_RUNNING\]/);

    const badTimeout = await pitr(['sync', '--timeout', '5'], dbDir);
    assert.equal(badTimeout.code, 1);
    assert.match(badTimeout.stderr, /BAD_DURATION/);
  });
});
