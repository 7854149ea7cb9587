// Human-readable numbers for the UI.

const UNITS = ['bytes', 'KiB', 'MiB', 'GiB', 'TiB'];

/** 1073741824 → "1 GiB", 49152 → "48 KiB", 1536 → "1.5 KiB". */
export function formatBytes(bytes: number): string {
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < UNITS.length - 1) {
    value /= 1024;
    unit++;
  }
  const digits = Number.isInteger(value) || value >= 100 ? 0 : 1;
  return `${value.toFixed(digits).replace(/\.0$/, '')} ${UNITS[unit]}`;
}

/** Milliseconds for timings: "4.2 ms", "812 ms", "1.84 s". */
export function formatMs(ms: number): string {
  if (ms < 10) return `${ms.toFixed(1)} ms`;
  if (ms < 1000) return `${Math.round(ms)} ms`;
  return `${(ms / 1000).toFixed(2)} s`;
}

export const yesNo = (v: boolean): string => (v ? 'Yes' : 'No');
