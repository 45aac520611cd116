import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { isPitrError } from '../../src/errors.js';
import { loadConfig } from '../../src/config/load-config.js';
import { parse, refused } from './config-fixture.js';

const EXAMPLE = `listen: 127.0.0.1:9090
sync-interval: 2s
retention: 14d
checkpoint-frames: 500
dbs:
  - path: /data/app.db
    replicas:
      - url: s3://bucket/app
  - dir: /data/tenants
    pattern: "*.sqlite"
    retention: 30d
    replicas:
      - url: s3://bucket/tenants/{name}
        sync-interval: 10s
      - file:///backups/tenants/{name}
`;

describe('config file', () => {
  it('reads the example: globals inherited by each database, then each replica, each level overriding', () => {
    const c = parse(EXAMPLE);
    assert.equal(c.source, '/etc/pitr/pitr.yml');
    assert.equal(c.listen, '127.0.0.1:9090');
    assert.equal(c.logLevel, 'info');
    assert.equal(c.nice, 10);
    const [app, tenants] = c.dbs;
    assert.ok(app?.kind === 'path' && tenants?.kind === 'dir');
    assert.equal(app.path, '/data/app.db');
    assert.equal(app.stateDir, '/data/app.db-pitr');
    assert.equal(app.line, 6);
    assert.equal(app.settings.syncIntervalMs, 2000, 'global');
    assert.equal(app.settings.retentionMs, 14 * 86_400_000, 'global');
    assert.equal(app.settings.checkpointFrames, 500, 'global db setting');
    assert.equal(app.settings.snapshotIntervalMs, 86_400_000, 'default');
    assert.deepEqual(app.replicas[0]?.settings, { syncIntervalMs: 2000, retentionMs: 14 * 86_400_000, retentionCheckMs: 3_600_000, heartbeatIntervalMs: 60_000, verifyIntervalMs: 0 });
    assert.equal(tenants.dir, '/data/tenants');
    assert.equal(tenants.pattern, '*.sqlite');
    assert.equal(tenants.recursive, false);
    assert.equal(tenants.stateDir, '/data/tenants/.pitr/{name}');
    assert.equal(tenants.settings.retentionMs, 30 * 86_400_000, 'db overrides global');
    assert.equal(tenants.settings.checkpointFrames, 500);
    const [s3, file] = tenants.replicas;
    assert.equal(s3?.url, 's3://bucket/tenants/{name}');
    assert.equal(s3?.settings.syncIntervalMs, 10_000, 'replica overrides');
    assert.equal(s3?.settings.retentionMs, 30 * 86_400_000, 'from its db');
    assert.equal(file?.url, 'file:///backups/tenants/{name}', 'a bare string item is a url');
    assert.equal(file?.settings.syncIntervalMs, 2000, 'from the global');
  });

  it('resolves relative paths against the config file directory', () => {
    const c = parse('socket: run/pitr.sock\ndbs:\n  - path: app.db\n    state-dir: ../state\n    replicas:\n      - ./backups/app\n  - dir: tenants\n    replicas: ["backups/{name}"]\n');
    const [app, tenants] = c.dbs;
    assert.equal(c.socket, '/etc/pitr/run/pitr.sock');
    assert.ok(app?.kind === 'path' && tenants?.kind === 'dir');
    assert.equal(app.path, '/etc/pitr/app.db');
    assert.equal(app.stateDir, '/etc/state');
    assert.equal(app.replicas[0]?.url, '/etc/pitr/backups/app');
    assert.equal(tenants.dir, '/etc/pitr/tenants');
    assert.equal(tenants.replicas[0]?.url, '/etc/pitr/backups/{name}');
  });

  it('refuses an unknown key at each level with its line and the nearest valid key', () => {
    refused('sync-intervl: 1s\ndbs:\n  - path: /a.db\n', 1, /unknown key "sync-intervl" at the top level/, /did you mean "sync-interval"\?/);
    refused('dbs:\n  - path: /a.db\n    retension: 7d\n', 3, /unknown key "retension" in the dbs: entry at line 2/, /did you mean "retention"\?/);
    refused('dbs:\n  - path: /a.db\n    replicas:\n      - url: s3://bkt/a\n        heartbeat: 1m\n', 5, /unknown key "heartbeat" in the replicas: item at line 4/, /did you mean "heartbeat-interval"\?/);
    refused('dbz:\n  - path: /a.db\n', 1, /unknown key "dbz"/, /did you mean "dbs"\?/);
    refused('colour: blue\ndbs:\n  - path: /a.db\n', 1, /unknown key "colour"/, /keys allowed here: .*listen/);
  });

  it('says where a known key belongs when it is at the wrong level', () => {
    refused('dbs:\n  - path: /a.db\n    listen: :9090\n', 3, /"listen" is not allowed in the dbs: entry/, /agent setting: write it at the top level/);
    refused('dbs:\n  - path: /a.db\n    replicas:\n      - url: s3://bkt/a\n        snapshot-interval: 1h\n', 5, /"snapshot-interval" is not allowed in the replicas: item/, /database setting/);
    refused('state-dir: /s\ndbs:\n  - path: /a.db\n', 1, /"state-dir" is not allowed at the top level/, /in a dbs: entry/);
    refused('config: x.yml\ndbs:\n  - path: /a.db\n', 1, /"config" is not allowed/, /--config is a command-line flag/);
  });

  it('refuses a bad value naming the key, its line and the accepted form', () => {
    refused('dbs:\n  - path: /a.db\n    snapshot-interval: 5\n', 3, /invalid snapshot-interval "5": a number needs a unit/, /e\.g\. 500ms, 30s/);
    refused('retention: 7D\ndbs:\n  - path: /a.db\n', 1, /invalid retention "7D"/, /did you mean 7d\?/);
    refused('spool-max-size: 1G\ndbs:\n  - path: /a.db\n', 1, /invalid spool-max-size "1G"/, /1GiB/);
    refused('dbs:\n  - path: /a.db\n    takeover: yes\n', 3, /invalid takeover "yes"/, /true or false/);
    refused('nice: 20\ndbs:\n  - path: /a.db\n', 1, /invalid nice "20"/, /from 0 to 19/);
    refused('log-level: loud\ndbs:\n  - path: /a.db\n', 1, /invalid log-level "loud"/, /debug, info, warn, error/);
    refused('checkpoint-frames: 0\ndbs:\n  - path: /a.db\n', 1, /invalid checkpoint-frames "0"/, /positive whole number/);
    refused('sync-interval:\ndbs:\n  - path: /a.db\n', 1, /sync-interval has no value/);
  });

  it('requires a non-empty dbs: list whose entries have exactly one of path and dir', () => {
    refused('listen: :9090\n', 0, /no dbs: list/);
    refused('dbs: []\n', 1, /dbs: is empty/);
    refused('dbs:\n  - path: /a.db\n    dir: /data\n', 3, /both path and dir/);
    refused('dbs:\n  - retention: 1d\n', 2, /neither path nor dir/);
    refused('dbs:\n  - path: /a.db\n    pattern: "*.db"\n', 3, /"pattern" applies to dir: entries only/);
    refused('dbs:\n  - path: /a.db\n    recursive: true\n', 3, /"recursive" applies to dir: entries only/);
    refused('dbs:\n  - path: /a.db\n  - path: /b.db\n  - path: /a.db\n', 4, /database \/a\.db is also in the dbs: entry at line 2/);
  });

  it('allows {name} only where a dir: entry fills it, and requires it there', () => {
    refused('dbs:\n  - path: /a.db\n    replicas: [\"s3://bkt/{name}\"]\n', 3, /replica url "s3:\/\/bkt\/\{name\}" holds \{name\}/, /write its replica out/);
    refused('dbs:\n  - path: /a.db\n    state-dir: /s/{name}\n', 3, /state-dir "\/s\/\{name\}" holds \{name\}/);
    refused('dbs:\n  - dir: /data/{name}\n    replicas: [\"s3://bkt/{name}\"]\n', 2, /dir "\/data\/\{name\}" holds \{name\}/);
    refused('dbs:\n  - dir: /data\n    replicas:\n      - url: s3://bkt/tenants\n', 4, /replica url "s3:\/\/bkt\/tenants" of a dir: entry has no \{name\}/, /same one/);
    refused('dbs:\n  - dir: /data\n    state-dir: /var/lib/pitr\n', 3, /state-dir "\/var\/lib\/pitr" of a dir: entry has no \{name\}/);
    refused('dbs:\n  - dir: /data\n    replicas: [\"s3://bkt/{nmae}\"]\n', 3, /holds \{nmae\}/, /only placeholder is \{name\}/);
    const c = parse('dbs:\n  - dir: /data\n    recursive: true\n    state-dir: /var/lib/pitr/{name}\n    replicas: [\"s3://bkt/{name}\"]\n');
    assert.ok(c.dbs[0]?.kind === 'dir' && c.dbs[0].recursive && c.dbs[0].stateDir === '/var/lib/pitr/{name}');
  });

  it('refuses a replica URL the agent could not open, with its line', () => {
    refused('dbs:\n  - path: /a.db\n    replicas:\n      - url: s4://bucket/app\n', 4, /"s4:" replicas are not supported/);
    refused('dbs:\n  - path: /a.db\n    replicas:\n      - sync-interval: 1s\n', 4, /has no url/);
  });

  it('reports YAML syntax errors and duplicate keys with their line', () => {
    refused('dbs:\n  - path: /a.db\n    replicas: [s3://b\n', 4, /not valid YAML/);
    refused('listen: a\nlisten: b\ndbs:\n  - path: /a.db\n', 2, /key "listen" appears twice/);
  });

  it('loadConfig: CONFIG_NOT_FOUND for a missing file, relative paths against the file', () => {
    const dir = mkdtempSync(join(tmpdir(), 'pitr-config-'));
    try {
      assert.throws(() => loadConfig(join(dir, 'nope.yml'), { expandEnv: true, env: {} }), (err: unknown) => isPitrError(err, 'CONFIG_NOT_FOUND') && /nope\.yml not found/.test(err.message) && /pitr config check/.test(err.hint ?? ''));
      writeFileSync(join(dir, 'pitr.yml'), 'dbs:\n  - path: app.db\n');
      const c = loadConfig(join(dir, 'pitr.yml'), { expandEnv: true, env: {} });
      assert.equal(c.source, join(dir, 'pitr.yml'));
      assert.ok(c.dbs[0]?.kind === 'path' && c.dbs[0].path === join(dir, 'app.db'));
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
