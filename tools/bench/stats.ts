// Number helpers the benchmark's sections share (`npm run bench`, tools/bench/main.ts).

/** The median of `xs` (the mean of the middle two for an even count). */
export const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
};

/** `x` rounded to `d` decimals, for the report. */
export const round = (x: number, d = 2): number => Math.round(x * 10 ** d) / 10 ** d;
