import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { expandEnv } from '../../src/config/env-expand.js';
import { parse, refused } from './config-fixture.js';

describe('config env expansion', () => {
  it('expands ${VAR} and $VAR before a value is read as its type', () => {
    const c = parse('sync-interval: ${SYNC}\ndbs:\n  - path: $DATA/app.db\n    replicas:\n      - s3://${BUCKET}/app\n', { SYNC: '10s', DATA: '/data', BUCKET: 'my-bucket' });
    const db = c.dbs[0];
    assert.equal(db?.settings.syncIntervalMs, 10_000);
    assert.equal(db?.kind === 'path' && db.path, '/data/app.db');
    assert.equal(db?.replicas[0]?.url, 's3://my-bucket/app');
  });

  it('refuses an unset variable, naming it and its line', () => {
    refused('dbs:\n  - path: /data/app.db\n    retention: ${KEEP}\n', 3, /retention: environment variable KEEP is not set/, /KEEP:-/);
    refused('dbs:\n  - path: /data/$DB_NAME\n', 2, /environment variable DB_NAME is not set/);
  });

  it('uses ${VAR:-default} when VAR is unset or empty, the value otherwise', () => {
    const text = 'dbs:\n  - path: /data/app.db\n    retention: ${KEEP:-30d}\n';
    assert.equal(parse(text).dbs[0]?.settings.retentionMs, 30 * 86_400_000);
    assert.equal(parse(text, { KEEP: '' }).dbs[0]?.settings.retentionMs, 30 * 86_400_000);
    assert.equal(parse(text, { KEEP: '2d' }).dbs[0]?.settings.retentionMs, 2 * 86_400_000);
  });

  it('reads $$ as one literal $, and leaves a $ before anything else as it is', () => {
    assert.deepEqual(expandEnv('a$$b $$HOME $1 cost$', { HOME: '/h' }), { ok: true, value: 'a$b $HOME $1 cost$' });
    const c = parse('exec: echo $$HOME\ndbs:\n  - path: /data/app.db\n', { HOME: '/h' });
    assert.equal(c.exec, 'echo $HOME');
  });

  it('refuses an unterminated ${', () => {
    refused('listen: ${PORT\ndbs:\n  - path: /a.db\n', 1, /"\$\{PORT" is not a variable reference/);
  });

  it('with expansion off (--no-expand-env) takes every value literally', () => {
    const c = parse('exec: echo ${NOT_SET} $$\ndbs:\n  - path: /data/app.db\n', {}, false);
    assert.equal(c.exec, 'echo ${NOT_SET} $$');
  });

  it('expands inside an exec list, item by item', () => {
    const c = parse('exec: [my-app, --port, "${PORT:-8080}"]\ndbs:\n  - path: /data/app.db\n');
    assert.deepEqual(c.exec, ['my-app', '--port', '8080']);
  });
});
