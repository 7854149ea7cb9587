// The sampler of sampler.ts as one WebGPU compute pass: one work-group of SAMPLER_THREADS threads
// per image reads the step's conditional and negative logits where ONNX Runtime left them, draws
// the token with this step's uniform, and writes it straight into the next step's int32 input_ids
// (and bumps both streams' lengths), so the decode loop never reads logits back. The f32
// arithmetic and summation order mirror CpuSampler. The repetition penalty's seen codes
// (repetition.ts) live in the state buffer as the same bitmask: the host writes the prompt's, the
// shader adds each drawn code, so they stay on the GPU too.
// A batch of N images (2N rows, image i's CFG pair at rows 2i, 2i + 1) is one dispatch of N
// work-groups: work-group i reads and writes only image i's slices (logits, scratch, step counter
// and codes, draws, seen codes, input_ids and lengths), at the strides of the params; its
// arithmetic is the single image's, so each image draws what it would alone.
import { SAMPLER_THREADS } from './sampler.ts';

/** Byte layout of the params uniform buffer (16-byte aligned). */
export const SAMPLER_PARAMS_BYTES = 64;

export interface SamplerParamsData {
  cfg: number;
  temperature: number;
  topK: number;
  topP: number;
  vocab: number;
  /** Token id of visual code 0 (written to input_ids as code + offset). */
  visualOffset: number;
  /** Offset (in u32 words) of image 0's draws in the state buffer (after every image's codes). */
  drawsOffset: number;
  /** Element offset of the negative stream's logits in the logits buffer ([2, 1, V] → V). */
  uncondOffset: number;
  /** Rows of input_ids / seqlens_k per image (2: both CFG streams get the same token). */
  rows: number;
  /** 1 or undefined = off. */
  repetitionPenalty?: number;
  /** Offset (in u32 words) of image 0's seen-codes bitmask in the state buffer; needed with a penalty. */
  seenOffset?: number;
  /**
   * Strides between images (work-group i handles image i at i × stride): logits elements (2V),
   * and in the state buffer, u32 words between step counters (each followed by its codes), draws
   * and seen-code masks. Unused with one image.
   */
  strides?: { logits: number; codes: number; draws: number; seen: number };
}

export function packSamplerParams(p: SamplerParamsData): ArrayBuffer {
  const buf = new ArrayBuffer(SAMPLER_PARAMS_BYTES);
  const f = new Float32Array(buf);
  const u = new Uint32Array(buf);
  f[0] = p.cfg;
  f[1] = p.temperature === 0 ? 0 : 1 / p.temperature;
  u[2] = p.temperature === 0 ? 1 : 0;
  u[3] = Math.min(Math.max(1, Math.floor(p.topK)), p.vocab);
  f[4] = p.topP;
  u[5] = p.vocab;
  u[6] = p.visualOffset;
  u[7] = p.drawsOffset;
  u[8] = p.uncondOffset;
  u[9] = p.rows;
  const penalty = p.repetitionPenalty ?? 1;
  if (penalty !== 1 && p.seenOffset === undefined) throw new Error('a repetition penalty needs the seen codes (seenOffset)');
  f[10] = penalty;
  u[11] = p.seenOffset ?? 0;
  u[12] = p.strides?.logits ?? 0;
  u[13] = p.strides?.codes ?? 0;
  u[14] = p.strides?.draws ?? 0;
  u[15] = p.strides?.seen ?? 0;
  return buf;
}

export const SAMPLER_WGSL = /* wgsl */ `
const THREADS: u32 = ${SAMPLER_THREADS}u;

struct Params {
  cfg: f32,
  inv_temp: f32,
  greedy: u32,
  top_k: u32,
  top_p: f32,
  vocab: u32,
  visual_offset: u32,
  draws_offset: u32,
  uncond_offset: u32,
  rows: u32,
  penalty: f32,
  seen_offset: u32,
  logits_stride: u32,
  codes_stride: u32,
  draws_stride: u32,
  seen_stride: u32,
};

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> logits: array<f32>;
@group(0) @binding(2) var<storage, read_write> scratch: array<f32>;
// Per image i: [i·codes_stride] = step counter, [.. + 1 ..] = generated codes,
// [draws_offset + i·draws_stride ..] = the per-step uniforms (f32 bits),
// [seen_offset + i·seen_stride ..] = the conditional stream's seen codes, one bit each (with a penalty only)
@group(0) @binding(3) var<storage, read_write> state: array<u32>;
// int32 input_ids [images·rows, 1] and seqlens_k [images·rows] of the next step: an image's rows get the same token
@group(0) @binding(4) var<storage, read_write> input_ids: array<u32>;
@group(0) @binding(5) var<storage, read_write> seqlens: array<i32>;

var<workgroup> red_f: array<f32, ${SAMPLER_THREADS}>;
var<workgroup> red_i: array<u32, ${SAMPLER_THREADS}>;
var<workgroup> hist: array<atomic<u32>, 256>;
var<workgroup> shared_u: array<u32, 4>;
var<workgroup> shared_f: array<f32, 4>;
// This work-group's image: where its slices start (set first thing in main).
var<private> logits_base: u32;
var<private> scratch_base: u32;
var<private> seen_base: u32;

fn float_key(v: f32) -> u32 {
  let b = bitcast<u32>(v);
  if ((b & 0x80000000u) != 0u) { return ~b; }
  return b | 0x80000000u;
}

fn chunk_bounds(t: u32) -> vec2<u32> {
  let chunk = (params.vocab + THREADS - 1u) / THREADS;
  return vec2<u32>(min(params.vocab, t * chunk), min(params.vocab, (t + 1u) * chunk));
}

fn kept(w: f32, floor: f32) -> bool { return w >= floor && w > 0.0; }

// The conditional logit of code i after the repetition penalty (CpuSampler: penalisedLogit; WGSL
// lets f32 division be 2.5 ULP off, so a near-tie could differ from the CPU, as exp() can).
fn penalised_cond(i: u32) -> f32 {
  let c = logits[logits_base + i];
  if (params.penalty == 1.0) { return c; }
  if (((state[seen_base + (i >> 5u)] >> (i & 31u)) & 1u) == 0u) { return c; }
  if (c < 0.0) { return c * params.penalty; }
  return c / params.penalty;
}

// Chunk sums of weights >= floor into red_f; thread 0 returns the sequential total in shared_f[0].
fn mass_above(t: u32, floor: f32) {
  let b = chunk_bounds(t);
  var acc = 0.0;
  for (var i = b.x; i < b.y; i++) {
    let w = scratch[scratch_base + i];
    if (kept(w, floor)) { acc = acc + w; }
  }
  red_f[t] = acc;
  workgroupBarrier();
  if (t == 0u) {
    var total = 0.0;
    for (var j = 0u; j < THREADS; j++) { total = total + red_f[j]; }
    shared_f[0] = total;
  }
  workgroupBarrier();
}

@compute @workgroup_size(${SAMPLER_THREADS})
fn main(@builtin(local_invocation_index) t: u32, @builtin(workgroup_id) wg: vec3<u32>) {
  let V = params.vocab;
  let image = wg.x;
  logits_base = image * params.logits_stride;
  scratch_base = image * V;
  seen_base = params.seen_offset + image * params.seen_stride;
  let counter = image * params.codes_stride;
  let step = state[counter];

  // 1. Penalty, CFG scores (before temperature) and their maximum / first argmax.
  var best = bitcast<f32>(0xff7fffffu); // -FLT_MAX
  var best_i = 0xffffffffu;
  for (var i = t; i < V; i += THREADS) {
    let c = penalised_cond(i);
    let n = logits[logits_base + params.uncond_offset + i];
    var s = n + params.cfg * (c - n);
    if (params.greedy == 0u) { s = s * params.inv_temp; }
    scratch[scratch_base + i] = s;
    if (s > best) { best = s; best_i = i; }
  }
  red_f[t] = best;
  red_i[t] = best_i;
  workgroupBarrier();
  for (var stride = THREADS / 2u; stride > 0u; stride = stride / 2u) {
    if (t < stride) {
      let other_f = red_f[t + stride];
      let other_i = red_i[t + stride];
      if (other_f > red_f[t] || (other_f == red_f[t] && other_i < red_i[t])) { red_f[t] = other_f; red_i[t] = other_i; }
    }
    workgroupBarrier();
  }
  let max_s = red_f[0];
  var token = red_i[0];
  workgroupBarrier();

  if (params.greedy == 0u) {
    // 2. Top-k: key of the k-th largest score, by radix select over 8-bit digits.
    var k_min = 0u;
    if (params.top_k < V) {
      var prefix = 0u;
      var prefix_mask = 0u;
      var remaining = params.top_k;
      for (var digit_pass = 0u; digit_pass < 4u; digit_pass++) {
        let shift = 24u - 8u * digit_pass;
        atomicStore(&hist[t], 0u);
        workgroupBarrier();
        for (var i = t; i < V; i += THREADS) {
          let key = float_key(scratch[scratch_base + i]);
          if ((key & prefix_mask) == prefix) { atomicAdd(&hist[(key >> shift) & 0xffu], 1u); }
        }
        workgroupBarrier();
        if (t == 0u) {
          var digit = 255u;
          for (; digit > 0u; digit--) {
            let h = atomicLoad(&hist[digit]);
            if (h >= remaining) { break; }
            remaining = remaining - h;
          }
          shared_u[0] = digit;
          shared_u[1] = remaining;
        }
        workgroupBarrier();
        prefix = prefix | (shared_u[0] << shift);
        prefix_mask = prefix_mask | (0xffu << shift);
        remaining = shared_u[1];
        workgroupBarrier();
      }
      k_min = prefix;
    }

    // 3. Unnormalised probabilities of the kept tokens.
    for (var i = t; i < V; i += THREADS) {
      let s = scratch[scratch_base + i];
      var w = 0.0;
      if (float_key(s) >= k_min) { w = exp(s - max_s); }
      scratch[scratch_base + i] = w;
    }
    storageBarrier();
    workgroupBarrier();

    // 4. Top-p: the largest weight floor keeping mass >= p · total, by bisection on f32 bits.
    var floor = 0.0;
    if (params.top_p < 1.0) {
      mass_above(t, 0.0);
      // workgroupUniformLoad: the bisection's bounds must be provably uniform (barriers inside).
      let mass_target = params.top_p * workgroupUniformLoad(&shared_f[0]);
      var lo = 0u;
      var hi = 0x3f800001u;
      loop {
        if (hi - lo <= 1u) { break; }
        let mid = (lo + hi) >> 1u;
        mass_above(t, bitcast<f32>(mid));
        if (workgroupUniformLoad(&shared_f[0]) >= mass_target) { lo = mid; } else { hi = mid; }
      }
      floor = bitcast<f32>(lo);
    }

    // 5. Inverse-CDF draw in index order: chunk sums (red_f) and their total, then one walk.
    mass_above(t, floor);
    if (t == 0u) {
      let total = shared_f[0];
      let draw_target = bitcast<f32>(state[params.draws_offset + image * params.draws_stride + step]) * total;
      var prefix_sum = 0.0;
      var last = 0xffffffffu;
      var found = false;
      for (var j = 0u; j < THREADS && !found; j++) {
        let cb = chunk_bounds(j);
        let next = prefix_sum + red_f[j];
        if (next > draw_target) {
          var a = prefix_sum;
          for (var i = cb.x; i < cb.y; i++) {
            let w = scratch[scratch_base + i];
            if (!kept(w, floor)) { continue; }
            a = a + w;
            last = i;
            if (a > draw_target) { break; }
          }
          found = true;
        } else {
          prefix_sum = next;
          if (red_f[j] > 0.0) {
            for (var i = cb.y; i > cb.x; i--) {
              if (kept(scratch[scratch_base + i - 1u], floor)) { last = i - 1u; break; }
            }
          }
        }
      }
      shared_u[2] = last;
    }
    workgroupBarrier();
    token = shared_u[2];
  }

  // 6. Feed the token to the next step of both streams; the conditional stream has now seen it.
  if (t == 0u) {
    state[counter + 1u + step] = token;
    // Every thread read the seen bits in step 1, before the barriers since: the next step sees it.
    if (params.penalty != 1.0) {
      let w = seen_base + (token >> 5u);
      state[w] = state[w] | (1u << (token & 31u));
    }
    state[counter] = step + 1u;
    for (var r = image * params.rows; r < (image + 1u) * params.rows; r++) {
      input_ids[r] = token + params.visual_offset;
      seqlens[r] = seqlens[r] + 1;
    }
  }
}
`;
