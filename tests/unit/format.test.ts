import { expect, test } from 'vitest';
import { formatBytes, formatMs } from '../../src/app/format.ts';

test('formatBytes uses binary units and drops needless decimals', () => {
  expect(formatBytes(0)).toBe('0 bytes');
  expect(formatBytes(1536)).toBe('1.5 KiB');
  expect(formatBytes(32768)).toBe('32 KiB');
  expect(formatBytes(1 << 30)).toBe('1 GiB');
  expect(formatBytes(4294967292)).toBe('4 GiB');
  expect(formatBytes(140 * 2 ** 30)).toBe('140 GiB');
});

test('formatMs picks a readable precision', () => {
  expect(formatMs(4.21)).toBe('4.2 ms');
  expect(formatMs(812.4)).toBe('812 ms');
  expect(formatMs(1840)).toBe('1.84 s');
});
