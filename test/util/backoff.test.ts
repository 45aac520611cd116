import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import { backoffMs, sleepAbortable } from '../../src/util/backoff.js';

describe('backoffMs', () => {
  it('grows a doubling ceiling up to maxMs; full jitter stays under it, half jitter in its upper half', () => {
    for (let retry = 1; retry <= 12; retry++) {
      const ceiling = Math.min(5_000, 100 * 2 ** (retry - 1));
      for (let i = 0; i < 200; i++) {
        const full = backoffMs(retry, { baseMs: 100, maxMs: 5_000, jitter: 'full' });
        assert.ok(full >= 0 && full <= ceiling, `full ${full} within [0, ${ceiling}]`);
        const half = backoffMs(retry, { baseMs: 100, maxMs: 5_000, jitter: 'half' });
        assert.ok(half >= Math.floor(ceiling / 2) && half <= ceiling, `half ${half} within [${ceiling / 2}, ${ceiling}]`);
      }
    }
  });

  it('stays finite for huge retry counts', () => {
    assert.ok(backoffMs(1e9, { baseMs: 250, maxMs: 3_000, jitter: 'half' }) <= 3_000);
  });
});

describe('sleepAbortable', () => {
  it('resolves after the wait, and rejects with the caller\'s error on abort', async () => {
    await sleepAbortable(1, undefined, () => new Error('never'));
    const ac = new AbortController();
    const p = sleepAbortable(60_000, ac.signal, () => new Error('stopped'));
    ac.abort();
    await assert.rejects(p, /stopped/);
    await assert.rejects(sleepAbortable(1, ac.signal, () => new Error('already')), /already/);
  });
});
