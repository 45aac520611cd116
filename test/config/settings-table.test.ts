import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { Command } from 'commander';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { agentConfigFrom, configFromFlags, configPathFrom } from '../../src/config/config-from-flags.js';
import { defaultDbSettings } from '../../src/config/defaults.js';
import { parseSettingText } from '../../src/config/setting-kinds.js';
import { SETTINGS } from '../../src/config/settings-table.js';
import { givenFlags, replicateOptions } from '../../src/cli/replicate-options.js';
import { isPitrError } from '../../src/errors.js';
import { parse } from './config-fixture.js';

/** `pitr replicate ARGS` parsed by the generated options, as the command will see them. */
function parseFlags(args: string[]): { cmd: Command; db: string | undefined; replicas: string[]; flags: Record<string, unknown> } {
  const cmd = new Command('replicate').argument('[db]').argument('[replicas...]').exitOverride();
  for (const o of replicateOptions()) cmd.addOption(o);
  cmd.parse(args, { from: 'user' });
  return { cmd, db: cmd.args[0], replicas: cmd.args.slice(1), flags: cmd.opts() };
}

describe('settings table', () => {
  it('covers every database and replica setting once, and every shown default reads back as the value', () => {
    const fields = SETTINGS.filter((s) => s.scope === 'db' || s.scope === 'replica').map((s) => s.field).sort();
    assert.deepEqual(fields, Object.keys(defaultDbSettings()).sort());
    assert.equal(new Set(SETTINGS.map((s) => s.key)).size, SETTINGS.length);
    for (const s of SETTINGS) {
      assert.ok(s.flag.startsWith(`--${s.kind === 'bool' && s.default === true ? 'no-' : ''}${s.key}`), `${s.key}: flag ${s.flag}`);
      if (s.defaultText !== undefined) assert.equal(parseSettingText(s.kind, s.defaultText, s.key), s.default, s.key);
      if ((s.scope === 'db' || s.scope === 'replica') && s.default !== undefined) {
        assert.equal((defaultDbSettings() as unknown as Record<string, unknown>)[s.field], s.default, `${s.key}: table and defaults.ts agree`);
      }
    }
  });

  it('makes one option per setting, named after its key', () => {
    const longs = replicateOptions().map((o) => o.long);
    assert.deepEqual(longs, SETTINGS.map((s) => s.flag.replace(/ .*/, '')));
    assert.ok(longs.includes('--config') && longs.includes('--no-expand-env') && longs.includes('--exec') && longs.includes('--restore-if-missing') && longs.includes('--socket'));
  });
});

describe('configFromFlags', () => {
  it('gives what a file with one path: entry gives', () => {
    const { db, replicas, flags } = parseFlags(['/data/app.db', 's3://bkt/app', '/backups/app', '--sync-interval', '5s', '--retention', '30d', '--max-lag', '1m', '--takeover', '--listen', ':9090', '--log-level', 'debug']);
    const fromFlags = configFromFlags(db as string, replicas, flags);
    const fromFile = parse('sync-interval: 5s\nretention: 30d\nmax-lag: 1m\ntakeover: true\nlisten: ":9090"\nlog-level: debug\ndbs:\n  - path: /data/app.db\n    replicas: [s3://bkt/app, /backups/app]\n');
    assert.deepEqual({ ...fromFlags, dbs: fromFlags.dbs.map((d) => ({ ...d, line: 0 })) }, { ...fromFile, source: undefined, dbs: fromFile.dbs.map((d) => ({ ...d, line: 0 })) });
  });

  it('resolves relative paths against the working directory and keeps the defaults', () => {
    const { db, replicas, flags } = parseFlags(['app.db', 'backups', '--state-dir', 'st']);
    const c = configFromFlags(db as string, replicas, flags, '/srv');
    const d = c.dbs[0];
    assert.ok(d?.kind === 'path');
    assert.equal(d.path, '/srv/app.db');
    assert.equal(d.stateDir, '/srv/st');
    assert.equal(d.replicas[0]?.url, '/srv/backups');
    assert.deepEqual(d.settings, defaultDbSettings());
    assert.equal(c.nice, 10);
    assert.equal(configFromFlags('/a.db', [], {}).dbs[0]?.stateDir, '/a.db-pitr');
  });

  it('refuses {name} on the command line', () => {
    assert.throws(() => configFromFlags('/a.db', ['s3://bkt/{name}'], {}), (e: unknown) => isPitrError(e, 'USAGE'));
  });
});

describe('configPathFrom and agentConfigFrom', () => {
  it('takes --config, else $PITR_CONFIG when no DB is given', () => {
    assert.equal(configPathFrom({ config: 'a.yml' }, { PITR_CONFIG: 'b.yml' }, undefined), 'a.yml');
    assert.equal(configPathFrom({}, { PITR_CONFIG: 'b.yml' }, undefined), 'b.yml');
    assert.equal(configPathFrom({}, { PITR_CONFIG: 'b.yml' }, '/a.db'), undefined);
    assert.throws(() => configPathFrom({ config: 'a.yml' }, {}, '/a.db'), (e: unknown) => isPitrError(e, 'USAGE'));
    assert.throws(() => configPathFrom({}, {}, undefined), (e: unknown) => isPitrError(e, 'USAGE') && /PITR_CONFIG/.test(e.hint ?? ''));
  });

  it('with a file, lets agent flags override it and refuses database flags', () => {
    const a = parseFlags(['--config', '/nonexistent/pitr.yml', '--sync-interval', '5s']);
    assert.throws(() => agentConfigFrom({ ...a, env: {}, given: givenFlags(a.cmd) }), (e: unknown) => isPitrError(e, 'USAGE') && /--sync-interval cannot be combined/.test(e.message));
    const b = parseFlags(['--config', '/nonexistent/pitr.yml', '--log-level', 'debug']);
    assert.deepEqual([...givenFlags(b.cmd)].sort(), ['config', 'logLevel']);
    assert.throws(() => agentConfigFrom({ ...b, env: {}, given: givenFlags(b.cmd) }), (e: unknown) => isPitrError(e, 'CONFIG_NOT_FOUND'));
    const dir = mkdtempSync(join(tmpdir(), 'pitr-config-'));
    try {
      writeFileSync(join(dir, 'pitr.yml'), 'log-level: warn\nnice: 5\ndbs:\n  - path: app.db\n');
      const c = parseFlags(['--log-level', 'debug']);
      const config = agentConfigFrom({ ...c, env: { PITR_CONFIG: join(dir, 'pitr.yml') }, given: givenFlags(c.cmd) });
      assert.equal(config.logLevel, 'debug', 'the flag wins');
      assert.equal(config.nice, 5, 'the file wins over a default');
      assert.ok(config.dbs[0]?.kind === 'path' && config.dbs[0].path === join(dir, 'app.db'));
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
