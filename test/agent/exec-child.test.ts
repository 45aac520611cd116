import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { isPitrError } from '../../src/errors.js';
import { exitCodeOf, startExecChild } from '../../src/agent/exec-child.js';
import { quietLog, shortTempDir, waitFor } from './agent-helpers.js';

const EXEC_CHILD_JS = fileURLToPath(new URL('../../src/agent/exec-child.js', import.meta.url));
const LOG_JS = fileURLToPath(new URL('../../src/log.js', import.meta.url));

let root: string;
before(async () => {
  root = await shortTempDir('pitr-exec-');
});
after(async () => {
  await rm(root, { recursive: true, force: true });
});

function throwsCode(fn: () => unknown, code: string, re: RegExp): void {
  assert.throws(fn, (err: unknown) => {
    assert.ok(isPitrError(err), String(err));
    assert.equal(err.code, code);
    assert.match(err.message, re);
    return true;
  });
}

describe('exec child', () => {
  it("passes the command's exit code through", async () => {
    const child = startExecChild('exit 7', quietLog());
    assert.equal(exitCodeOf(await child.exited), 7);
    assert.equal(exitCodeOf(await startExecChild(['sh', '-c', 'exit 0'], quietLog()).exited), 0);
  });

  it('runs a simple command string in place of the shell (exec), with the environment inherited', async () => {
    process.env['PITR_EXEC_TEST'] = '5';
    try {
      const child = startExecChild("sh -c 'exit $PITR_EXEC_TEST'", quietLog());
      assert.equal(exitCodeOf(await child.exited), 5);
    } finally {
      delete process.env['PITR_EXEC_TEST'];
    }
    // Leading assignments stay with the command.
    assert.equal(exitCodeOf(await startExecChild("PITR_X=9 sh -c 'exit $PITR_X'", quietLog()).exited), 9);

    const sleeper = startExecChild('sleep 30', quietLog());
    // The child itself is `sleep`, not a shell waiting for it: signals sent to it reach sleep.
    await waitFor(() => readFileSync(`/proc/${sleeper.pid}/comm`, 'utf8').trim() === 'sleep', 'sleep to replace the shell');
    sleeper.kill('SIGKILL');
    const res = await sleeper.exited;
    assert.deepEqual(res, { code: null, signal: 'SIGKILL' });
    assert.equal(exitCodeOf(res), 137);
  });

  it('a compound command string runs as given; SIGTERM reaches what traps it', async () => {
    const ready = join(root, 'trap-ready');
    const child = startExecChild(`trap 'kill $p; exit 3' TERM; sleep 30 & p=$!; touch ${ready}; wait $p`, quietLog());
    await waitFor(() => existsSync(ready), 'the trap to be set');
    child.kill('SIGTERM');
    assert.equal(exitCodeOf(await child.exited), 3);
  });

  it('refuses a command that does not exist, naming it (EXEC_FAILED), before running anything', () => {
    throwsCode(() => startExecChild('no-such-command-pitr --serve', quietLog()), 'EXEC_FAILED', /no-such-command-pitr/);
    throwsCode(() => startExecChild(['no-such-command-pitr', '--serve'], quietLog()), 'EXEC_FAILED', /no-such-command-pitr.*not found on PATH/);
    throwsCode(() => startExecChild('./no/such/file', quietLog()), 'EXEC_FAILED', /not an executable file/);
    throwsCode(() => startExecChild('   ', quietLog()), 'EXEC_FAILED', /empty/);
  });

  it("a command the shell cannot find inside a compound string ends with the shell's 127, logged as such", async () => {
    const lines: string[] = [];
    const child = startExecChild('cd / && no-such-command-pitr 2>/dev/null', quietLog(lines));
    assert.equal(exitCodeOf(await child.exited), 127);
    assert.ok(lines.some((l) => /could not be run by the shell/.test(l) && /no-such-command-pitr/.test(l)), lines.join('\n'));
  });

  it('forwardSignals: SIGTERM to the agent reaches the child, and the agent exits with its code', async () => {
    const ready = join(root, 'fwd-ready');
    // A stand-in for the supervisor in its own process, so that a real SIGTERM can be sent to it.
    const script = `
      const { startExecChild, forwardSignals, exitCodeOf } = await import(${JSON.stringify(EXEC_CHILD_JS)});
      const { createLogger } = await import(${JSON.stringify(LOG_JS)});
      const child = startExecChild(process.argv[1], createLogger({ write: () => {} }));
      forwardSignals(child, () => {});
      process.exitCode = exitCodeOf(await child.exited);
    `;
    const agent = spawn(process.execPath, ['--input-type=module', '-e', script, `trap 'kill $p; exit 3' TERM; sleep 30 & p=$!; touch ${ready}; wait $p`], { stdio: 'inherit' });
    const ended = new Promise<number | null>((r) => agent.once('exit', (code) => r(code)));
    await waitFor(() => existsSync(ready), 'the child to set its trap');
    agent.kill('SIGTERM');
    assert.equal(await ended, 3);
  });
});
