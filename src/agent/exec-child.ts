import { spawn, type ChildProcess } from 'node:child_process';
import { accessSync, constants, statSync } from 'node:fs';
import { constants as osConstants } from 'node:os';
import { delimiter, join } from 'node:path';
import { PitrError } from '../errors.js';
import type { Logger } from '../log.js';

export interface ExecResult {
  code: number | null;
  signal: NodeJS.Signals | null;
}

export interface ExecChild {
  /** Settles when the command has ended; rejects (EXEC_FAILED) when it could not be started. */
  exited: Promise<ExecResult>;
  kill(sig: NodeJS.Signals): void;
  pid: number | undefined;
}

/** Words that start a shell construct `exec` cannot prefix (or a builtin it cannot run). */
const SHELL_WORDS = new Set([
  'if', 'then', 'else', 'elif', 'fi', 'case', 'esac', 'for', 'while', 'until', 'do', 'done', 'function', 'select',
  '{', '}', '!', '[', '[[', 'exec', 'cd', 'export', 'set', 'unset', 'trap', 'eval', '.', 'source', 'alias', 'ulimit',
  'umask', 'wait', 'exit', 'return', 'shift', 'read', 'readonly', 'local', 'test', 'true', 'false', ':', 'echo', 'printf',
  'command', 'builtin', 'type', 'times', 'kill', 'pwd', 'getopts', 'hash', 'jobs', 'fg', 'bg',
]);
/** Leading `NAME=value` words: the shell sets them for the command (and they survive `exec`). */
const ASSIGNMENTS = /^((?:\s*[A-Za-z_][A-Za-z0-9_]*=[^\s'"`$\\;&|]*)*\s*)(.*)$/s;
const PLAIN_WORD = /^[A-Za-z0-9_./~+@%:,-]+$/;

/**
 * Run the application next to the agent, stdio and environment inherited. A list is spawned as
 * is; a string runs through `/bin/sh -c`, with `exec` before a simple command so that the
 * command itself, not a shell, is the child and receives the signals the agent forwards. A
 * compound string (`cd /app && npm start`) runs as given: end it with `exec` to get the same.
 * A command word that names no executable is refused here (EXEC_FAILED), before anything runs.
 */
export function startExecChild(cmd: string | string[], log: Logger): ExecChild {
  const { file, args, shell } = checkExecCommand(cmd);

  let child: ChildProcess;
  try {
    child = spawn(file, args, { stdio: 'inherit', env: process.env });
  } catch (err) {
    throw execFailed(cmd, err);
  }
  const exited = new Promise<ExecResult>((resolveExit, reject) => {
    child.once('error', (err) => reject(execFailed(cmd, err)));
    child.once('exit', (code, signal) => {
      // The shell's own "not found" / "cannot execute" codes: the command never ran; its message
      // is already on stderr, and this line names the command it was about.
      if (shell && (code === 127 || code === 126)) {
        log.error('the exec command could not be run by the shell (see its message above)', { exec: display(cmd), exitCode: code });
      } else {
        log.info('the exec command ended', { exec: display(cmd), exitCode: code, signal });
      }
      resolveExit({ code, signal });
    });
  });
  // Spawn errors reject `exited`; a caller that awaits it later must not crash on the way.
  exited.catch(() => undefined);
  if (child.pid !== undefined) log.info('started the exec command', { exec: display(cmd), pid: child.pid });
  return {
    exited,
    pid: child.pid,
    kill: (sig) => {
      if (child.exitCode === null && child.signalCode === null) child.kill(sig);
    },
  };
}

/**
 * EXEC_FAILED now for a command that could not start (empty, or a first word that names no
 * executable), so that the agent can refuse it before it starts anything. Returns what to spawn.
 */
export function checkExecCommand(cmd: string | string[]): { file: string; args: string[]; shell: boolean } {
  const { file, args, word, shell } = plan(cmd);
  if (word !== undefined) checkExecutable(word, cmd);
  return { file, args, shell };
}

/** The agent's exit code for how the child ended: its code, or 128 + signal number, as a shell. */
export function exitCodeOf(result: ExecResult): number {
  if (result.code !== null) return result.code;
  if (result.signal !== null) return 128 + (osConstants.signals[result.signal] ?? 0);
  return 1;
}

/**
 * Forward the signals a service manager or user sends the agent to the child, and tell the caller
 * (the supervisor starts its shutdown on SIGINT/SIGTERM). Returns the function that stops it.
 *
 * The child shares the agent's process group, so a terminal's Ctrl-C reaches it directly: the
 * first SIGINT is not forwarded when stdin is a terminal (the child would get it twice, and many
 * apps take a second SIGINT as "quit now"); any further SIGINT is.
 */
export function forwardSignals(
  child: Pick<ExecChild, 'kill'>,
  onSignal: (sig: NodeJS.Signals) => void = () => undefined,
  signals: NodeJS.Signals[] = ['SIGINT', 'SIGTERM', 'SIGHUP'],
): () => void {
  let sawInt = false;
  const handlers = signals.map((sig) => {
    const handler = (): void => {
      const fromTerminal = sig === 'SIGINT' && !sawInt && process.stdin.isTTY === true;
      if (sig === 'SIGINT') sawInt = true;
      if (!fromTerminal) child.kill(sig);
      onSignal(sig);
    };
    process.on(sig, handler);
    return [sig, handler] as const;
  });
  return () => {
    for (const [sig, handler] of handlers) process.off(sig, handler);
  };
}

function plan(cmd: string | string[]): { file: string; args: string[]; word: string | undefined; shell: boolean } {
  if (Array.isArray(cmd)) {
    const [file, ...args] = cmd;
    if (file === undefined || file === '') throw new PitrError('EXEC_FAILED', 'the exec command is empty', 'name the command to run, e.g. --exec "node server.js"');
    return { file, args, word: file, shell: false };
  }
  if (cmd.trim() === '') throw new PitrError('EXEC_FAILED', 'the exec command is empty', 'name the command to run, e.g. --exec "node server.js"');
  const m = ASSIGNMENTS.exec(cmd);
  const assignments = m?.[1] ?? '';
  const rest = m?.[2] ?? cmd;
  const first = rest.split(/\s+/, 1)[0] ?? '';
  // Only a single simple command may be prefixed; anything else could change meaning with exec.
  const simple = !/[;&|\n(){}]/.test(cmd) && PLAIN_WORD.test(first) && !SHELL_WORDS.has(first);
  if (!simple) return { file: '/bin/sh', args: ['-c', cmd], word: undefined, shell: true };
  return { file: '/bin/sh', args: ['-c', `${assignments}exec ${rest}`], word: first.startsWith('~') ? undefined : first, shell: true };
}

/** Refuse a command word that names no executable file, the way the shell would find it. */
function checkExecutable(word: string, cmd: string | string[]): void {
  const candidates = word.includes('/') ? [word] : (process.env['PATH'] ?? '/usr/local/bin:/usr/bin:/bin').split(delimiter).filter(Boolean).map((d) => join(d, word));
  for (const path of candidates) {
    try {
      if (!statSync(path).isFile()) continue;
      accessSync(path, constants.X_OK);
      return;
    } catch {
      // not this one
    }
  }
  const where = word.includes('/') ? `${word} is not an executable file` : `${word} was not found on PATH`;
  throw new PitrError('EXEC_FAILED', `cannot run the exec command ${display(cmd)}: ${where}`, 'check the command name (and PATH, or give its full path)');
}

function execFailed(cmd: string | string[], err: unknown): PitrError {
  return new PitrError('EXEC_FAILED', `cannot run the exec command ${display(cmd)}: ${(err as Error).message}`, 'check the command name (and PATH, or give its full path)', { cause: err });
}

function display(cmd: string | string[]): string {
  return Array.isArray(cmd) ? JSON.stringify(cmd) : `"${cmd}"`;
}
