import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';

describe('library API (package.json main)', () => {
  it('the module package.json names exists and exports the documented entry points', async () => {
    const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { main: string };
    const api = (await import(new URL(`../../${pkg.main}`, import.meta.url).href)) as Record<string, unknown>;
    for (const name of ['PitrError', 'Supervisor', 'loadConfig', 'configFromFlags', 'openStorage', 'registerBackend', 'planRestore', 'restore', 'verifyReplica', 'verifyInWorker', 'catchUpsOf']) {
      assert.equal(typeof api[name], 'function', name);
    }
  });
});
