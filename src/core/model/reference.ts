// A plain-TypeScript Qwen2 forward pass over the ORIGINAL (HF-named) weights, in float64: the
// independent check of the ONNX graph on random small models (tests) and a debugging aid. Slow;
// for tiny models only. Follows docs/model.md#forward-pass step by step (one stream, KV cache of post-RoPE keys).
import type { LmSpec } from '../base/model-spec.ts';
import { ropeTables } from './lm-graph.ts';

export type HfWeights = (name: string) => Float32Array;

export class Qwen2Reference {
  private readonly k: Float64Array[][] = [];
  private readonly v: Float64Array[][] = [];
  private readonly rope: { cos: Float32Array; sin: Float32Array };
  constructor(
    private readonly spec: LmSpec,
    private readonly w: HfWeights,
    maxLen = 1024,
  ) {
    for (let i = 0; i < spec.numLayers; i++) {
      this.k.push([]);
      this.v.push([]);
    }
    this.rope = ropeTables(spec.headDim, spec.ropeTheta, maxLen);
  }

  get length(): number {
    return this.k[0]!.length;
  }

  /**
   * Appends `ids`; returns the visual logits [visualCount] of each new position (only of the
   * last one with `lastOnly`).
   */
  forward(ids: readonly number[], lastOnly = false): Float64Array[] {
    const s = this.spec;
    const H = s.hiddenSize;
    const hd = s.headDim;
    const group = s.numHeads / s.numKvHeads;
    const embed = this.w('model.embed_tokens.weight');
    const out: Float64Array[] = [];
    for (let n = 0; n < ids.length; n++) {
      const id = ids[n]!;
      const pos = this.length;
      let h: Float64Array = Float64Array.from(embed.subarray(id * H, (id + 1) * H));
      for (let l = 0; l < s.numLayers; l++) {
        const p = `model.layers.${l}.`;
        const x = rms(h, this.w(`${p}input_layernorm.weight`), s.rmsNormEps);
        const q = lin(x, this.w(`${p}self_attn.q_proj.weight`), this.w(`${p}self_attn.q_proj.bias`));
        const k = lin(x, this.w(`${p}self_attn.k_proj.weight`), this.w(`${p}self_attn.k_proj.bias`));
        const v = lin(x, this.w(`${p}self_attn.v_proj.weight`), this.w(`${p}self_attn.v_proj.bias`));
        for (let hh = 0; hh < s.numHeads; hh++) this.applyRope(q, hh * hd, pos);
        for (let hh = 0; hh < s.numKvHeads; hh++) this.applyRope(k, hh * hd, pos);
        this.k[l]!.push(k);
        this.v[l]!.push(v);
        const a = new Float64Array(s.numHeads * hd);
        const T = this.k[l]!.length;
        const scores = new Float64Array(T);
        for (let hh = 0; hh < s.numHeads; hh++) {
          const kvh = Math.floor(hh / group);
          let max = -Infinity;
          for (let t = 0; t < T; t++) {
            const kt = this.k[l]![t]!;
            let d = 0;
            for (let j = 0; j < hd; j++) d += q[hh * hd + j]! * kt[kvh * hd + j]!;
            scores[t] = d / Math.sqrt(hd);
            max = Math.max(max, scores[t]!);
          }
          let sum = 0;
          for (let t = 0; t < T; t++) sum += scores[t] = Math.exp(scores[t]! - max);
          for (let t = 0; t < T; t++) {
            const vt = this.v[l]![t]!;
            const pr = scores[t]! / sum;
            for (let j = 0; j < hd; j++) a[hh * hd + j]! += pr * vt[kvh * hd + j]!;
          }
        }
        const o = lin(a, this.w(`${p}self_attn.o_proj.weight`));
        for (let i = 0; i < H; i++) h[i]! += o[i]!;
        const x2 = rms(h, this.w(`${p}post_attention_layernorm.weight`), s.rmsNormEps);
        const gate = lin(x2, this.w(`${p}mlp.gate_proj.weight`));
        const up = lin(x2, this.w(`${p}mlp.up_proj.weight`));
        for (let i = 0; i < gate.length; i++) gate[i] = (gate[i]! / (1 + Math.exp(-gate[i]!))) * up[i]!;
        const down = lin(gate, this.w(`${p}mlp.down_proj.weight`));
        for (let i = 0; i < H; i++) h[i]! += down[i]!;
      }
      if (lastOnly && n < ids.length - 1) continue;
      h = rms(h, this.w('model.norm.weight'), s.rmsNormEps);
      const head = s.tieWordEmbeddings ? embed : this.w('lm_head.weight');
      const logits = new Float64Array(s.visualCount);
      for (let c = 0; c < s.visualCount; c++) {
        const row = (s.visualOffset + c) * H;
        let d = 0;
        for (let i = 0; i < H; i++) d += h[i]! * head[row + i]!;
        logits[c] = d;
      }
      out.push(logits);
    }
    return out;
  }

  private applyRope(x: Float64Array, off: number, pos: number): void {
    const half = this.spec.headDim / 2;
    for (let i = 0; i < half; i++) {
      const c = this.rope.cos[pos * half + i]!;
      const sn = this.rope.sin[pos * half + i]!;
      const a = x[off + i]!;
      const b = x[off + half + i]!;
      x[off + i] = a * c - b * sn;
      x[off + half + i] = b * c + a * sn;
    }
  }
}

function rms(x: Float64Array, w: Float32Array, eps: number): Float64Array {
  let ss = 0;
  for (const v of x) ss += v * v;
  const r = 1 / Math.sqrt(ss / x.length + eps);
  return x.map((v, i) => v * r * w[i]!);
}

/** x W^T (+ b), W [n, k] row-major. */
function lin(x: Float64Array, w: Float32Array, b?: Float32Array): Float64Array {
  const k = x.length;
  const n = w.length / k;
  const y = new Float64Array(n);
  for (let r = 0; r < n; r++) {
    let d = b ? b[r]! : 0;
    for (let i = 0; i < k; i++) d += x[i]! * w[r * k + i]!;
    y[r] = d;
  }
  return y;
}
