import test from 'ava';
import { parseDuration, parseSize } from '../../src/core/units.js';

test('durations', (t) => {
  t.is(parseDuration('500ms'), 500);
  t.is(parseDuration('30s'), 30_000);
  t.is(parseDuration('5m'), 300_000);
  t.is(parseDuration('2'), 2000);
  t.is(parseDuration('1.5s'), 1500);
  t.is(parseDuration('off', 'x', true), null);
  t.throws(() => parseDuration('off', 'snapshot interval'), { message: /snapshot interval: not a duration/ });
  t.throws(() => parseDuration('5 minutes'), { code: 'INVALID_ARGUMENT' } as never);
});

test('sizes', (t) => {
  t.is(parseSize('4096'), 4096);
  t.is(parseSize('200MiB'), 200 * 1024 * 1024);
  t.is(parseSize('2G'), 2 * 1024 ** 3);
  t.is(parseSize('1GB'), 1e9);
  t.throws(() => parseSize('12 parsecs'));
});
