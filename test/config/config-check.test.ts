import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { AgentConfig } from '../../src/config/config-types.js';
import { describeRun, expectCliError, runCli } from '../integration/helpers.js';

describe('pitr config check (a real process)', () => {
  let dir = '';
  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'pitr-config-check-'));
    writeFileSync(
      join(dir, 'good.yml'),
      'sync-interval: ${SYNC:-2s}\ndbs:\n  - path: app.db\n    replicas:\n      - url: s3://bkt/app\n  - dir: /data/tenants\n    retention: 30d\n    replicas:\n      - url: s3://bkt/tenants/{name}\n        sync-interval: 10s\n',
    );
    writeFileSync(join(dir, 'bad.yml'), 'dbs:\n  - path: app.db\n    replicas:\n      - url: s3://bkt/app\n        sync-intervall: 5s\n');
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('prints every entry with its effective settings and exits 0 for a good file', async () => {
    const r = await runCli(['config', 'check', join(dir, 'good.yml')], { timeoutMs: 60_000 });
    assert.equal(r.code, 0, describeRun(r));
    assert.match(r.stdout, new RegExp(`^config: ${join(dir, 'good.yml')} \\(valid\\)`));
    assert.match(r.stdout, new RegExp(`db ${join(dir, 'app.db')}  \\(line 3\\)\\n  state-dir: ${join(dir, 'app.db')}-pitr`));
    assert.match(r.stdout, /replica s3:\/\/bkt\/app\n {4}sync-interval: 2s\n {4}retention: 7d/);
    assert.match(r.stdout, /dir \/data\/tenants {2}\(line 6\)/);
    assert.match(r.stdout, /replica s3:\/\/bkt\/tenants\/\{name\}\n {4}sync-interval: 10s\n {4}retention: 30d/);
    assert.match(r.stdout, /snapshot-wal-min: 256MiB/);
    assert.equal(r.stderr, '');
  });

  it('prints the AgentConfig with --json', async () => {
    const r = await runCli(['config', 'check', '--json', join(dir, 'good.yml')], { timeoutMs: 60_000, env: { SYNC: '3s' } });
    assert.equal(r.code, 0, describeRun(r));
    const c = JSON.parse(r.stdout) as AgentConfig;
    assert.equal(c.dbs.length, 2);
    assert.equal(c.dbs[0]?.replicas[0]?.settings.syncIntervalMs, 3000);
    assert.equal(c.dbs[1]?.replicas[0]?.settings.retentionMs, 30 * 86_400_000);
  });

  it('names the file, line and key of a bad file and exits 1', async () => {
    const r = await runCli(['config', 'check', join(dir, 'bad.yml')], { timeoutMs: 60_000 });
    const err = expectCliError(r, 'CONFIG_INVALID');
    assert.equal(r.code, 1);
    assert.match(err.message, /bad\.yml:5: unknown key "sync-intervall"/);
    assert.equal(err.hint, 'did you mean "sync-interval"?');
    assert.equal(r.stdout, '');
  });

  it('says a missing file is missing', async () => {
    const r = await runCli(['config', 'check', join(dir, 'none.yml')], { timeoutMs: 60_000 });
    const err = expectCliError(r, 'CONFIG_NOT_FOUND');
    assert.match(err.message, /none\.yml not found/);
  });
});
