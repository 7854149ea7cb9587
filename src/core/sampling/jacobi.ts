// Speculative Jacobi decoding (SJD), backend-neutral: draft a window of tokens, verify them with
// one model run over [last token, drafts…] (the KV cache keeps the accepted prefix), and accept
// with the speculative-sampling rule, so every emitted token is distributed exactly as the
// ordinary sampler would draw it given its prefix (unlike the reference, docs/model.md#sjd-rule, which forces
// its first draft through and starts greedy).
//
// Per iteration, with drafts d_1..d_D drawn independently from proposals q_1..q_D (fixed before
// the run) and targets p_0..p_D from the run (row i = the next-token distribution after input i):
//   accept d_i with probability min(1, p_{i-1}(d_i) / q_i(d_i));
//   at the first rejection emit a draw from normalise(max(0, p_{i-1} − q_i)) and stop;
//   if all D are accepted, emit a draw from p_D (the bonus token).
// So an iteration emits 1..D+1 tokens. The proposals of the next iteration are this run's rows
// after the emitted ones (Jacobi: the model's guesses for later positions, from a context with
// possibly wrong drafts); slots beyond them use the last row. Any known q keeps the rule exact;
// better q only raises the acceptance. With temperature 0 every p and q is a point mass, so SJD
// reproduces greedy decoding token for token. Each p_i is the plain sampler's whole processed
// distribution for its own prefix, repetition penalty included (the committed codes and drafts
// 1 … i are that row's seen codes; engine/sjd-loop.ts), so the rule stays exact with a penalty.
import { Pcg32 } from './prng.ts';

/** One model run over the window: target distributions for each of drafts.length + 1 rows. */
export interface WindowVerifier {
  /**
   * Runs [last, ...drafts] after the committed prefix; returns drafts.length + 1 normalised
   * distributions. They must stay valid until the verify call after the next (the core keeps one
   * iteration's rows as the next iteration's proposals).
   */
  verify(last: number, drafts: Int32Array): Promise<readonly Float32Array[]>;
  /** The last `count` inputs of the latest verify (the last token and the accepted drafts) are now
   * prefix; the rest of the window is overwritten by the next run. */
  commit(count: number): void;
}

/** Independent uniform streams, derived from the seed: drafts, acceptance tests, emitted draws. */
export interface SjdUniforms {
  draft(): number;
  accept(): number;
  emit(): number;
}

/** PCG32 streams of the seed other than the plain sampler's (0x5eed): reproducible per seed. */
export function sjdUniforms(seed: number): SjdUniforms {
  const draft = new Pcg32(seed, 0x51d1);
  const accept = new Pcg32(seed, 0x51d2);
  const emit = new Pcg32(seed, 0x51d3);
  return { draft: () => draft.nextUniform(), accept: () => accept.nextUniform(), emit: () => emit.nextUniform() };
}

/**
 * Accept draft `d` at window slot `slot` (1-based) given p(d), q(d) and a uniform: the exact rule
 * is u < p/q. Pluggable only so tests can run the reference's biased rule as a negative control.
 */
export type AcceptRule = (slot: number, pOfDraft: number, qOfDraft: number, u: number) => boolean;

export const exactAcceptance: AcceptRule = (_slot, p, q, u) => u * q < p;

export interface SjdRequest {
  /** Distribution of the first token (after the prefill): drawn plainly, no drafts yet. */
  first: Float32Array;
  /** Codes of the image, `kept` included. */
  steps: number;
  /** Codes given before the first drawn one (a kept prefix of rows): the draws start after them. */
  kept?: Int32Array;
  /** Drafts per run (the run covers window + 1 tokens). */
  window: number;
  verifier: WindowVerifier;
  uniforms: SjdUniforms;
  rule?: AcceptRule;
  /** After each iteration with the codes so far. */
  onTokens?: (codes: Int32Array, count: number) => void;
  /** Checked before each run; throws to stop (e.g. cancellation). */
  checkpoint?: () => void;
}

export interface SjdResult {
  codes: Int32Array;
  /** Verification runs (one window run of the model each). */
  iterations: number;
  draftsProposed: number;
  draftsAccepted: number;
  /** Tokens emitted per verification run (the first token comes from the prefill, not a run). */
  acceptedPerRun: number;
}

export async function speculativeJacobiDecode(req: SjdRequest): Promise<SjdResult> {
  const { steps, window, verifier, uniforms } = req;
  const rule = req.rule ?? exactAcceptance;
  const codes = new Int32Array(steps);
  const start = req.kept?.length ?? 0;
  if (req.kept) codes.set(req.kept);
  if (steps <= start) return { codes, iterations: 0, draftsProposed: 0, draftsAccepted: 0, acceptedPerRun: 0 };
  codes[start] = drawFrom(req.first, uniforms.emit());
  let n = start + 1;
  req.onTokens?.(codes, n);
  let proposals: readonly Float32Array[] = [];
  let fallback = req.first;
  let iterations = 0;
  let proposed = 0;
  let accepted = 0;
  while (n < steps) {
    req.checkpoint?.();
    const D = Math.min(window, steps - n - 1);
    const q: Float32Array[] = [];
    const drafts = new Int32Array(D);
    for (let s = 0; s < D; s++) {
      q.push(proposals[s] ?? fallback);
      drafts[s] = drawFrom(q[s]!, uniforms.draft());
    }
    const rows = await verifier.verify(codes[n - 1]!, drafts);
    iterations++;
    proposed += D;
    let k = 0;
    let rejected = false;
    for (; k < D; k++) {
      const p = rows[k]!;
      const d = drafts[k]!;
      if (rule(k + 1, p[d]!, q[k]![d]!, uniforms.accept())) {
        codes[n++] = d;
        continue;
      }
      codes[n++] = drawResidual(p, q[k]!, uniforms.emit());
      rejected = true;
      break;
    }
    if (!rejected) codes[n++] = drawFrom(rows[D]!, uniforms.emit());
    accepted += k;
    verifier.commit(k + 1);
    proposals = rows.slice(k + 1);
    fallback = rows[D]!;
    req.onTokens?.(codes, n);
  }
  return { codes, iterations, draftsProposed: proposed, draftsAccepted: accepted, acceptedPerRun: iterations ? (steps - start - 1) / iterations : 0 };
}

/** Inverse-CDF draw from normalised probabilities (index order); u in [0, 1). */
export function drawFrom(probs: Float32Array, u: number): number {
  let total = 0;
  for (let i = 0; i < probs.length; i++) total += probs[i]!;
  return drawScaled(probs, u * total);
}

/** Draw from normalise(max(0, p − q)); where rounding leaves no residual mass, from p. */
export function drawResidual(p: Float32Array, q: Float32Array, u: number): number {
  let total = 0;
  for (let i = 0; i < p.length; i++) {
    const r = p[i]! - q[i]!;
    if (r > 0) total += r;
  }
  if (!(total > 0)) return drawFrom(p, u);
  const target = u * total;
  let acc = 0;
  let last = -1;
  for (let i = 0; i < p.length; i++) {
    const r = p[i]! - q[i]!;
    if (!(r > 0)) continue;
    acc += r;
    last = i;
    if (acc > target) return i;
  }
  return last;
}

function drawScaled(probs: Float32Array, target: number): number {
  let acc = 0;
  let last = -1;
  for (let i = 0; i < probs.length; i++) {
    const w = probs[i]!;
    if (!(w > 0)) continue;
    acc += w;
    last = i;
    if (acc > target) return i;
  }
  if (last < 0) throw new Error('drawFrom: a distribution with no mass');
  return last;
}
