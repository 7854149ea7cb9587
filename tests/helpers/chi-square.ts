// Pearson's chi-square goodness of fit, for the statistical sampler tests (sampler.test.ts,
// sjd*.test.ts): cells with an expected count below 5 are pooled into one.

/** Pearson chi-square over cells with expected count >= 5 (rarer cells pooled). */
export function chiSquare(counts: ArrayLike<number>, probs: ArrayLike<number>, N: number): { stat: number; dof: number } {
  let stat = 0;
  let dof = -1;
  let pooledObs = 0;
  let pooledExp = 0;
  for (let i = 0; i < probs.length; i++) {
    const e = probs[i]! * N;
    if (e >= 5) {
      stat += (counts[i]! - e) ** 2 / e;
      dof++;
    } else {
      pooledObs += counts[i]!;
      pooledExp += e;
    }
  }
  if (pooledExp > 0) {
    stat += (pooledObs - pooledExp) ** 2 / Math.max(pooledExp, 1e-12);
    dof++;
  }
  return { stat, dof };
}

/** Upper critical value of chi-square at significance 1e-6 (Wilson–Hilferty approximation). */
export function chiSquareCritical(dof: number): number {
  const z = 4.753; // one-sided normal quantile for 1e-6
  const a = 2 / (9 * dof);
  return dof * (1 - a + z * Math.sqrt(a)) ** 3;
}
