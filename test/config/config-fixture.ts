import assert from 'node:assert/strict';
import { isPitrError } from '../../src/errors.js';
import type { AgentConfig } from '../../src/config/config-types.js';
import { parseConfig } from '../../src/config/load-config.js';

/** `text` read as the config file /etc/pitr/pitr.yml (named pitr.yml in messages). */
export function parse(text: string, env: NodeJS.ProcessEnv = {}, expandEnv = true): AgentConfig {
  return parseConfig(text, { file: 'pitr.yml', source: '/etc/pitr/pitr.yml', env, expandEnv });
}

/** Asserts that `text` is refused with CONFIG_INVALID at `line`, message and hint matching. */
export function refused(text: string, line: number, message: RegExp, hint?: RegExp, env: NodeJS.ProcessEnv = {}): void {
  assert.throws(
    () => parse(text, env),
    (err: unknown) => {
      assert.ok(isPitrError(err, 'CONFIG_INVALID'), `expected CONFIG_INVALID, got ${String(err)}`);
      assert.ok(err.message.startsWith(line > 0 ? `pitr.yml:${line}: ` : "pitr.yml: "), `line ${line} in: ${err.message}`);
      assert.match(err.message, message);
      if (hint) assert.match(err.hint ?? '', hint);
      return true;
    },
  );
}
