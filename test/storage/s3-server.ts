import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { request } from 'node:http';
import { createRequire } from 'node:module';
import { createServer } from 'node:net';
import os from 'node:os';
import path from 'node:path';

/** s3rver's fixed account: it accepts only requests signed with these. */
export const S3RVER_CREDENTIALS = { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' } as const;

export interface S3TestServer {
  /** http://127.0.0.1:PORT */
  readonly endpoint: string;
  readonly bucket: string;
  /** Where the server keeps its data; survives stop() and restart(). */
  readonly directory: string;
  /** Credentials the server accepts, for S3Storage's `credentials` option. */
  readonly credentials: { accessKeyId: string; secretAccessKey: string };
  /** The same credentials as environment variables, for child processes (the CLI). */
  readonly env: Record<string, string>;
  /** A replica URL for `prefix` in the bucket, with this server as endpoint. */
  url(prefix?: string): string;
  /** Kill the server (SIGKILL, like a crash). Data stays; restart() brings it back. */
  stop(): Promise<void>;
  /** Kill and start again on the same port and directory, so stored objects survive. */
  restart(): Promise<void>;
  /** Stop for good and delete the data directory. */
  close(): Promise<void>;
}

// Children of every harness in this process, killed on exit even when a test failed or threw
// before its cleanup ran: a leftover s3rver would keep its port and directory forever.
const running = new Set<ChildProcess>();
process.once('exit', () => {
  for (const child of running) child.kill('SIGKILL');
});

const requireHere = createRequire(import.meta.url);

// Runs in the child. It uses s3rver's API rather than its CLI so that it can also exit when its
// stdin closes: that happens when the test process dies in any way, even by SIGKILL, which no
// exit hook in the parent survives.
const CHILD_SCRIPT = `
const S3rver = require(process.env.PITR_S3RVER_MODULE);
const server = new S3rver({
  address: '127.0.0.1',
  port: Number(process.env.PITR_S3RVER_PORT),
  directory: process.env.PITR_S3RVER_DIR,
  silent: true,
  configureBuckets: [{ name: process.env.PITR_S3RVER_BUCKET, configs: [] }],
});
server.run().then(
  () => process.stdout.write('ready\\n'),
  (err) => { process.stderr.write(String(err && err.stack || err) + '\\n'); process.exit(1); },
);
process.stdin.on('end', () => process.exit(0));
process.stdin.on('error', () => process.exit(0));
process.stdin.resume();
`;

const START_TIMEOUT_MS = 20_000;

/**
 * Start s3rver on 127.0.0.1 (a free port, a fresh temp directory) with `bucket` created, and
 * resolve once it answers HTTP. Always pair with close() (e.g. in after()).
 */
export async function startS3Server(opts: { bucket?: string } = {}): Promise<S3TestServer> {
  const bucket = opts.bucket ?? 'pitr-test';
  const directory = await mkdtemp(path.join(os.tmpdir(), 'pitr-s3rver-'));
  const port = await freePort();
  const endpoint = `http://127.0.0.1:${port}`;
  let child: ChildProcess | undefined = await launch(port, directory, bucket);

  const stop = async (): Promise<void> => {
    const c = child;
    child = undefined;
    if (c !== undefined) await kill(c);
  };

  return {
    endpoint,
    bucket,
    directory,
    credentials: { ...S3RVER_CREDENTIALS },
    env: { AWS_ACCESS_KEY_ID: S3RVER_CREDENTIALS.accessKeyId, AWS_SECRET_ACCESS_KEY: S3RVER_CREDENTIALS.secretAccessKey },
    url(prefix = '') {
      const p = prefix.replace(/^\/+|\/+$/g, '');
      return `s3://${bucket}${p === '' ? '' : `/${p}`}?endpoint=${endpoint}&region=us-east-1`;
    },
    stop,
    async restart() {
      await stop();
      child = await launch(port, directory, bucket);
    },
    async close() {
      await stop();
      await rm(directory, { recursive: true, force: true });
    },
  };
}

async function launch(port: number, directory: string, bucket: string): Promise<ChildProcess> {
  // s3rver encrypts ListObjectsV2 continuation tokens with DES, which OpenSSL 3 (Node 17+) only
  // offers through its legacy provider: without it every paginated listing fails with a 500.
  const child = spawn(process.execPath, ['--openssl-legacy-provider', '-e', CHILD_SCRIPT], {
    env: {
      ...process.env,
      PITR_S3RVER_MODULE: requireHere.resolve('s3rver'),
      PITR_S3RVER_PORT: String(port),
      PITR_S3RVER_DIR: directory,
      PITR_S3RVER_BUCKET: bucket,
    },
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  running.add(child);
  child.once('exit', () => running.delete(child));
  // The child must not keep the test process alive; the stdin pipe is its lifeline, not a reason to wait.
  child.unref();
  for (const s of [child.stdin, child.stdout, child.stderr]) (s as unknown as { unref?: () => void } | null)?.unref?.();

  let stderr = '';
  child.stderr!.setEncoding('utf8').on('data', (d: string) => {
    stderr = (stderr + d).slice(-4000);
  });
  try {
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`s3rver did not start within ${START_TIMEOUT_MS} ms: ${stderr}`)), START_TIMEOUT_MS);
      let out = '';
      child.stdout!.setEncoding('utf8').on('data', (d: string) => {
        out += d;
        if (out.includes('ready\n')) {
          clearTimeout(timer);
          resolve();
        }
      });
      child.once('exit', (code, signal) => {
        clearTimeout(timer);
        reject(new Error(`s3rver exited during start (code ${code}, signal ${signal}): ${stderr}`));
      });
      child.once('error', (err) => {
        clearTimeout(timer);
        reject(err);
      });
    });
    await waitForHttp(port, START_TIMEOUT_MS);
  } catch (err) {
    await kill(child);
    throw err;
  }
  return child;
}

async function kill(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  // The child is unref'd so that it never holds the test process open; while we wait for its
  // exit it must count, or the event loop may run dry and end the test mid-await.
  child.ref();
  child.kill('SIGKILL');
  await exited;
}

/** Resolve once anything answers HTTP on the port (s3rver answers an unsigned GET with 403). */
async function waitForHttp(port: number, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const ok = await new Promise<boolean>((resolve) => {
      const req = request({ host: '127.0.0.1', port, path: '/', method: 'GET', timeout: 1000 }, (res) => {
        res.resume();
        resolve(true);
      });
      req.on('error', () => resolve(false));
      req.on('timeout', () => req.destroy());
      req.end();
    });
    if (ok) return;
    if (Date.now() > deadline) throw new Error(`s3rver on port ${port} did not answer within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/**
 * A port nothing listens on right now. The kernel picks it; there is a small window before the
 * child binds it, which is acceptable for tests (a clash fails the start loudly, not silently).
 */
async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      srv.close(() => (typeof addr === 'object' && addr !== null ? resolve(addr.port) : reject(new Error('no port'))));
    });
  });
}
