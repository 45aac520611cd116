import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { BufferPool } from '../../src/util/buffer-pool.js';

describe('BufferPool', () => {
  it('hands a given-back buffer out again for a body that fits, as a view of exactly the size asked', () => {
    const pool = new BufferPool();
    const a = pool.take(1000);
    assert.equal(a.length, 1000);
    pool.give(a);
    const b = pool.take(600);
    assert.equal(b.length, 600);
    assert.equal(b.buffer, a.buffer, 'reused');
    // Free list now empty: a second take allocates.
    assert.notEqual(pool.take(600).buffer, a.buffer);
  });

  it('does not spend a buffer more than twice too big, and ignores what it did not hand out', () => {
    const pool = new BufferPool();
    const big = pool.take(2000);
    pool.give(big);
    assert.notEqual(pool.take(500).buffer, big.buffer, 'too big for 500 bytes');
    assert.equal(pool.take(1000).buffer, big.buffer, 'within twice: used');
    const foreign = Buffer.alloc(1000);
    pool.give(foreign);
    assert.notEqual(pool.take(1000).buffer, foreign.buffer);
  });

  it('keeps at most maxFreeBytes of free buffers', () => {
    const pool = new BufferPool(1500);
    const x = pool.take(1000);
    const y = pool.take(1000);
    pool.give(x);
    pool.give(y); // 2000 free would pass the cap: dropped
    assert.equal(pool.take(1000).buffer, x.buffer);
    assert.notEqual(pool.take(1000).buffer, y.buffer);
  });
});
