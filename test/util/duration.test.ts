import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import { isPitrError } from '../../src/errors.js';
import { parseDuration, parseSize, parseTimestamp } from '../../src/util/duration.js';

const DAY = 86_400_000;

/** Asserts that fn throws a PitrError with `code` whose message or hint mentions each of `words`. */
function refuses(fn: () => unknown, code: string, ...words: string[]): void {
  assert.throws(fn, (err: unknown) => {
    assert.ok(isPitrError(err), `not a PitrError: ${String(err)}`);
    assert.equal(err.code, code);
    for (const w of words) assert.ok(`${err.message} ${err.hint ?? ''}`.includes(w), `"${w}" not in: ${err.message} / ${err.hint}`);
    return true;
  });
}

describe('durations', () => {
  it('reads every documented unit, case-sensitively', () => {
    assert.equal(parseDuration('0'), 0);
    assert.equal(parseDuration('500ms'), 500);
    assert.equal(parseDuration('30s'), 30_000);
    assert.equal(parseDuration('1m'), 60_000);
    assert.equal(parseDuration('1.5m'), 90_000);
    assert.equal(parseDuration('24h'), DAY);
    assert.equal(parseDuration('7d'), 7 * DAY);
    assert.equal(parseDuration('2w'), 14 * DAY);
    assert.equal(parseDuration('1mo'), 31 * DAY);
    assert.equal(parseDuration('1y'), 366 * DAY);
    assert.equal(parseDuration('1h30m'), 90 * 60_000);
    assert.equal(parseDuration('1y6mo'), (366 + 6 * 31) * DAY);
  });

  it('a month and a year are never shorter than a calendar one (retention keeps at least what was asked)', () => {
    assert.ok(parseDuration('1mo') >= 31 * DAY);
    assert.ok(parseDuration('1y') >= 366 * DAY);
  });

  it('refuses "M": minutes or months', () => {
    refuses(() => parseDuration('1M', '--retention'), 'BAD_DURATION', '--retention', '"1M"', '1m', '1mo');
    refuses(() => parseDuration('3M'), 'BAD_DURATION', '3mo');
  });

  it('refuses other upper-case units, suggesting the lower-case one', () => {
    refuses(() => parseDuration('1H'), 'BAD_DURATION', 'case-sensitive', '1h');
    refuses(() => parseDuration('7D'), 'BAD_DURATION', '7d');
    refuses(() => parseDuration('10MS'), 'BAD_DURATION', '10ms');
    refuses(() => parseDuration('1Y'), 'BAD_DURATION', '1y');
  });

  it('refuses bare numbers, unknown units and garbage', () => {
    for (const bad of ['5', '1.5', 'forever', '-3s', '1min', '1 h', '', 'h', '1h30', '1sec']) refuses(() => parseDuration(bad), 'BAD_DURATION');
  });
});

describe('sizes', () => {
  it('reads decimal and binary units', () => {
    assert.equal(parseSize('0'), 0);
    assert.equal(parseSize('512B'), 512);
    assert.equal(parseSize('1KB'), 1000);
    assert.equal(parseSize('1kB'), 1000);
    assert.equal(parseSize('1KiB'), 1024);
    assert.equal(parseSize('500MB'), 500e6);
    assert.equal(parseSize('64MiB'), 64 * 1024 ** 2);
    assert.equal(parseSize('1.5GiB'), 1.5 * 1024 ** 3);
    assert.equal(parseSize('2TB'), 2e12);
    assert.equal(parseSize('1TiB'), 1024 ** 4);
    assert.equal(parseSize('64 MiB'), 64 * 1024 ** 2);
  });

  it('refuses a bare K, M, G or T (decimal or binary?) in either case', () => {
    refuses(() => parseSize('64M', '--wal-reset-size'), 'BAD_SIZE', '--wal-reset-size', '64MiB', '64MB');
    for (const bad of ['64m', '1g', '1G', '16k', '16K', '1t']) refuses(() => parseSize(bad), 'BAD_SIZE', 'iB');
  });

  it('refuses units in the wrong case, suggesting the right one', () => {
    refuses(() => parseSize('64mib'), 'BAD_SIZE', '64MiB');
    refuses(() => parseSize('64mb'), 'BAD_SIZE', '64MB');
    refuses(() => parseSize('1gib'), 'BAD_SIZE', '1GiB');
  });

  it('refuses bare numbers and garbage', () => {
    for (const bad of ['5', '12zz', '-1MiB', 'big', '', '1e3MB']) refuses(() => parseSize(bad), 'BAD_SIZE');
  });
});

describe('timestamps', () => {
  it('reads RFC 3339 with any offset and fraction', () => {
    assert.equal(parseTimestamp('2026-11-22T10:15:00.250Z'), Date.UTC(2026, 10, 22, 10, 15, 0, 250));
    assert.equal(parseTimestamp('2026-11-22T11:15:00+01:00'), Date.UTC(2026, 10, 22, 10, 15, 0));
    assert.equal(parseTimestamp('2024-02-29T00:00:00Z'), Date.UTC(2024, 1, 29));
    assert.equal(parseTimestamp('2000-02-29T23:59:59Z'), Date.UTC(2000, 1, 29, 23, 59, 59));
    assert.equal(parseTimestamp('2026-12-31 23:59:59.999-05:30'), Date.UTC(2027, 0, 1, 5, 29, 59, 999));
  });

  it('refuses impossible calendar dates instead of rolling them over', () => {
    refuses(() => parseTimestamp('2026-02-30T00:00:00Z', '--to'), 'BAD_TIME', '--to', 'February 2026 has 28 days');
    refuses(() => parseTimestamp('2026-02-29T00:00:00Z'), 'BAD_TIME', '28 days');
    refuses(() => parseTimestamp('1900-02-29T00:00:00Z'), 'BAD_TIME', '28 days');
    refuses(() => parseTimestamp('2026-04-31T00:00:00Z'), 'BAD_TIME', 'April 2026 has 30 days');
    refuses(() => parseTimestamp('2026-13-01T00:00:00Z'), 'BAD_TIME', 'month 13');
    refuses(() => parseTimestamp('2026-00-10T00:00:00Z'), 'BAD_TIME');
    refuses(() => parseTimestamp('2026-01-00T00:00:00Z'), 'BAD_TIME');
    refuses(() => parseTimestamp('2026-11-22T24:00:00Z'), 'BAD_TIME', 'hour 24');
    refuses(() => parseTimestamp('2026-11-22T10:60:00Z'), 'BAD_TIME', 'minute 60');
    refuses(() => parseTimestamp('2026-11-22T10:00:60Z'), 'BAD_TIME', 'second 60');
    refuses(() => parseTimestamp('2026-11-22T10:00:00+24:00'), 'BAD_TIME', 'offset');
  });

  it('refuses times without a zone and other forms', () => {
    for (const bad of ['yesterday', '2026-11-22T10:15:00', '2026-11-22', '1795392000000', '2026-11-22T10:15Z']) refuses(() => parseTimestamp(bad), 'BAD_TIME');
  });
});
