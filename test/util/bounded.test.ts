import assert from 'node:assert/strict';
import { setImmediate as tick } from 'node:timers/promises';
import { describe, it } from 'node:test';

import { limit, mapBounded, mapInOrder, Semaphore } from '../../src/util/bounded.js';

describe('Semaphore', () => {
  it('grants at most `size` permits, first come first served; releasing twice frees one permit', async () => {
    const sem = new Semaphore(2);
    const r1 = await sem.acquire();
    const r2 = await sem.acquire();
    const order: number[] = [];
    const w3 = sem.acquire().then((r) => (order.push(3), r));
    const w4 = sem.acquire().then((r) => (order.push(4), r));
    await tick();
    assert.deepEqual(order, []);
    r1();
    r1();
    const r3 = await w3;
    await tick();
    assert.deepEqual(order, [3], 'a double release hands out one permit only');
    r2();
    const r4 = await w4;
    assert.deepEqual(order, [3, 4]);
    assert.equal(sem.inUse, 2);
    r3();
    r4();
    assert.equal(sem.inUse, 0);
  });

  it('a waiter whose signal aborts gives up its place', async () => {
    const sem = new Semaphore(1);
    const held = await sem.acquire();
    const ac = new AbortController();
    const waiting = sem.acquire(ac.signal, () => new Error('gave up'));
    ac.abort();
    await assert.rejects(waiting, /gave up/);
    held();
    const again = await sem.acquire();
    assert.equal(sem.inUse, 1);
    again();
  });
});

describe('limit and mapBounded', () => {
  it('never run more than n at once, and keep results in item order', async () => {
    let running = 0;
    let peak = 0;
    const work = async (x: number): Promise<number> => {
      running++;
      peak = Math.max(peak, running);
      await tick();
      running--;
      return x * 2;
    };
    const items = Array.from({ length: 20 }, (_, i) => i);
    assert.deepEqual(await mapBounded(items, 3, work), items.map((x) => x * 2));
    assert.ok(peak <= 3 && peak > 1, `peak ${peak}`);

    peak = 0;
    const lim = limit(2);
    assert.deepEqual(await Promise.all(items.map((x) => lim(() => work(x)))), items.map((x) => x * 2));
    assert.ok(peak <= 2, `peak ${peak}`);
  });

  it('mapBounded starts nothing after a failure, waits for the calls running, then throws the first failure', async () => {
    const started: number[] = [];
    let running = 0;
    await assert.rejects(
      mapBounded([0, 1, 2, 3, 4, 5, 6, 7], 2, async (x) => {
        started.push(x);
        running++;
        await tick();
        running--;
        if (x === 1) throw new Error('one failed');
        return x;
      }),
      /one failed/,
    );
    assert.equal(running, 0, 'nothing left running');
    assert.ok(started.length < 8, `started ${started.join(',')}`);
  });
});

describe('mapInOrder', () => {
  it('yields in source order with at most n calls in flight', async () => {
    let running = 0;
    let peak = 0;
    const out: number[] = [];
    for await (const r of mapInOrder([5, 1, 4, 2, 3], async (x) => {
      running++;
      peak = Math.max(peak, running);
      for (let i = 0; i < x; i++) await tick();
      running--;
      return x;
    }, 2)) out.push(r);
    assert.deepEqual(out, [5, 1, 4, 2, 3]);
    assert.ok(peak <= 2);
  });
});
