import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DirDiscovery, fillTemplate, findDatabases, globToRegExp, nameOf } from '../../src/agent/dir-discovery.js';
import { databaseSpec, IDLE_REQUESTS_PER_MIN } from '../../src/agent/database-spec.js';
import { configFromFlags } from '../../src/config/config-from-flags.js';
import type { DirDbSpec } from '../../src/config/config-types.js';

describe('dir discovery', () => {
  it('takes the files the pattern names, never SQLite side files, hidden entries or pitr\'s own directories', () => {
    const dir = mkdtempSync(join(tmpdir(), 'pitr-disc-'));
    try {
      for (const f of ['a.db', 'b.db', 'a.db-wal', 'a.db-shm', 'c.db-journal', '.h.db', 'notes.txt']) writeFileSync(join(dir, f), '');
      mkdirSync(join(dir, 'sub'));
      writeFileSync(join(dir, 'sub', 'd.db'), '');
      // What the agent itself creates: a state directory beside each database and the hidden one.
      mkdirSync(join(dir, 'a.db-pitr'));
      writeFileSync(join(dir, 'a.db-pitr', 'agent.lock'), '');
      mkdirSync(join(dir, '.pitr', 'b'), { recursive: true });
      writeFileSync(join(dir, '.pitr', 'b', 'x.db'), '');
      assert.deepEqual(findDatabases(dir, '*.db', false), [join(dir, 'a.db'), join(dir, 'b.db')]);
      assert.deepEqual(findDatabases(dir, '*.db', true), [join(dir, 'a.db'), join(dir, 'b.db'), join(dir, 'sub', 'd.db')]);
      // `*` with recursion must not take the agent's lock files (each would make a new state directory).
      assert.deepEqual(findDatabases(dir, '*', true), [join(dir, 'a.db'), join(dir, 'b.db'), join(dir, 'notes.txt'), join(dir, 'sub', 'd.db')]);
      assert.equal(nameOf(dir, join(dir, 'sub', 'd.db')), 'sub/d');
      assert.equal(nameOf(dir, join(dir, 'noext')), 'noext');
      assert.deepEqual(findDatabases(join(dir, 'missing'), '*.db', false), []);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('reports each database once as it appears and once as it goes', () => {
    const dir = mkdtempSync(join(tmpdir(), 'pitr-disc-'));
    const added: string[] = [];
    const removed: string[] = [];
    const d = new DirDiscovery(dir, '*.db', false, (p) => added.push(p), (p) => removed.push(p));
    try {
      writeFileSync(join(dir, 'a.db'), '');
      d.scan();
      d.scan();
      writeFileSync(join(dir, 'b.db'), '');
      rmSync(join(dir, 'a.db'));
      d.scan();
      assert.deepEqual(added, [join(dir, 'a.db'), join(dir, 'b.db')]);
      assert.deepEqual(removed, [join(dir, 'a.db')]);
    } finally {
      d.stop();
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('picks up a new database from the directory\'s events, long before the next rescan', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'pitr-disc-'));
    const added: string[] = [];
    const d = new DirDiscovery(dir, '*.db', false, (p) => added.push(p), () => {});
    try {
      d.start(600_000, 600_000);
      writeFileSync(join(dir, 'new.db'), '');
      for (let i = 0; i < 500 && added.length === 0; i++) await new Promise((r) => setTimeout(r, 10));
      assert.deepEqual(added, [join(dir, 'new.db')]);
    } finally {
      d.stop();
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('globs: * ? [..] [!..], everything else literal', () => {
    assert.ok(globToRegExp('t-??.db').test('t-01.db'));
    assert.ok(!globToRegExp('t-??.db').test('t-1.db'));
    assert.ok(globToRegExp('[ab]*.db').test('a1.db'));
    assert.ok(!globToRegExp('[!ab]*.db').test('a1.db'));
    assert.ok(!globToRegExp('*.db').test('x.dbx'));
    assert.ok(!globToRegExp('a+b.db').test('aab.db'));
    assert.equal(fillTemplate('s3://b/{name}/x/{name}', 't1'), 's3://b/t1/x/t1');
  });
});

describe('database spec', () => {
  const entry = (): DirDbSpec => {
    const flags = configFromFlags('/data/x.db', ['/backups/x'], {});
    const base = flags.dbs[0];
    if (!base) throw new Error('no db');
    return { ...base, kind: 'dir', dir: '/data/tenants', pattern: '*.db', recursive: false, stateDir: undefined, replicas: [{ url: 's3://b/t/{name}', settings: base.settings }] };
  };

  it('fills {name}, defaults the state directory to DIR/.pitr/{name}, and keeps the intervals of a small agent', () => {
    const s = databaseSpec('/data/tenants/acme.db', entry(), 10);
    assert.equal(s.replicas[0]?.url, 's3://b/t/acme');
    assert.equal(s.stateDir, '/data/tenants/.pitr/acme');
    assert.equal(s.replicas[0]?.settings.heartbeatIntervalMs, 60_000);
    assert.equal(s.leasePeriodMs, undefined);
  });

  it('stretches heartbeats and lease periods so that a thousand idle replicas cost about the same as a hundred', () => {
    const s = databaseSpec('/data/tenants/acme.db', entry(), 1000);
    const hb = s.replicas[0]?.settings.heartbeatIntervalMs ?? 0;
    assert.equal(1000 * (60_000 / hb), IDLE_REQUESTS_PER_MIN, 'heartbeats per minute across the agent');
    assert.equal(s.leasePeriodMs, 30 * 60_000);
    assert.ok(1000 * 3 * (60_000 / (s.leasePeriodMs ?? 1)) <= IDLE_REQUESTS_PER_MIN, 'renewals per minute across the agent');
  });
});
