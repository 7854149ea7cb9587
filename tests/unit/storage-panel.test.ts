// The storage panel's summary: the models' size (the store's own count) and the browser's count
// for the site (navigator.storage.estimate) said so that they agree: a browser that stores the
// models compressed counts less than their size, and the text says why instead of two bare
// figures that contradict each other.
import { describe, expect, it } from 'vitest';
import { storageUsageText } from '../../src/app/storage-panel.ts';
import { formatBytes } from '../../src/app/format.ts';

const GiB = 2 ** 30;

describe('storage panel summary', () => {
  it('the browser counts less than the models (compressed): said as such, both figures shown', () => {
    const text = storageUsageText({ modelBytes: 2.3 * GiB, estimate: { usage: 1.7 * GiB, quota: 10 * GiB }, persisted: true });
    expect(text).toContain(`Models: ${formatBytes(2.3 * GiB)}.`);
    expect(text).toContain(formatBytes(1.7 * GiB));
    expect(text).toContain(formatBytes(10 * GiB));
    expect(text).toMatch(/less than the models’ size, as it stores them compressed/);
    expect(text).not.toMatch(/the gallery/);
    expect(text).toMatch(/Storage is persistent/);
  });

  it('the browser counts more: the rest is named (gallery, offline files)', () => {
    const text = storageUsageText({ modelBytes: 430 * 2 ** 20, estimate: { usage: 500 * 2 ** 20, quota: 10 * GiB }, persisted: false });
    expect(text).toContain(formatBytes(500 * 2 ** 20));
    expect(text).toMatch(/the models, the gallery and the app’s offline files/);
    expect(text).not.toMatch(/compressed/);
    expect(text).toMatch(/Storage is not persistent/);
  });

  it('without estimate() or persisted(): the models alone', () => {
    expect(storageUsageText({ modelBytes: 0, estimate: null, persisted: null })).toBe(`Models: ${formatBytes(0)}.`);
  });
});
