import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { benchEnv } from './agent-harness.js';

const WRITER = fileURLToPath(new URL('./many-writer.js', import.meta.url));

export interface ManyWriter {
  ready: Promise<void>;
  go(): void;
  /** Per database, when each COMMIT returned (µs, CLOCK_MONOTONIC). */
  done: Promise<Record<string, number[]>>;
}

/** Starts bench/many-writer.js on `dbs`; go() starts the commits once it is ready. */
export function startManyWriter(dbs: readonly string[], intervalMs: number, durationMs: number, outFile: string): ManyWriter {
  const child = spawn(process.execPath, [WRITER, '--out', outFile, '--interval-ms', String(intervalMs), '--duration-ms', String(durationMs), ...dbs], {
    env: benchEnv(),
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  let out = '';
  let err = '';
  let onReady: () => void = () => {};
  const ready = new Promise<void>((r) => (onReady = r));
  child.stdout!.setEncoding('utf8').on('data', (d: string) => {
    out += d;
    if (out.includes('ready\n')) onReady();
  });
  child.stderr!.setEncoding('utf8').on('data', (d: string) => (err += d));
  const done = new Promise<Record<string, number[]>>((resolve, reject) =>
    child.once('exit', (code) => {
      if (code !== 0) reject(new Error(`many-writer exited ${code}: ${err}`));
      else resolve(JSON.parse(readFileSync(outFile, 'utf8')) as Record<string, number[]>);
    }),
  );
  return { ready: Promise.race([ready, done.then(() => {})]), go: () => child.stdin!.end('go\n'), done };
}
