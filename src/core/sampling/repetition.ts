// The repetition penalty as Transformers' `generate` applies `generation_config.repetition_penalty`
// in SimpleAR's reference path (docs/model.md#sampling-order): on the conditional stream's raw
// logits, every id already in that stream's sequence (prompt and generated ids) is divided by the
// penalty where its logit is positive and multiplied where it is negative, before the CFG
// combine; the negative stream is not penalised.
//
// The reference penalises over the whole vocabulary, and so would this if it had the text rows;
// but only the visual rows are sampled (docs/model.md#deviations), and a penalty on a text row
// moves that row alone (the log-softmax's constant shift is the same for every row, see
// docs/model.md#cfg). So only ids in the visual range can change the draw: the codes generated
// so far, and any visual id in the prompt (the prompt template has none). The set below is kept
// over the visual range only, as one bit per code, the layout the GPU sampler reads too.

const f = Math.fround;

/** The visual codes a stream has seen, one bit per code (u32 words, code c = bit c & 31 of word c >> 5). */
export class SeenCodes {
  readonly words: Uint32Array<ArrayBuffer>;

  constructor(readonly visualCount: number) {
    this.words = new Uint32Array(seenWords(visualCount));
  }

  /** The codes of `ids` (token ids) that fall in the visual range [visualOffset, visualOffset + visualCount). */
  static ofTokens(ids: readonly number[], visualOffset: number, visualCount: number): SeenCodes {
    const seen = new SeenCodes(visualCount);
    for (const id of ids) if (id >= visualOffset && id < visualOffset + visualCount) seen.add(id - visualOffset);
    return seen;
  }

  add(code: number): void {
    this.words[code >>> 5]! |= 1 << (code & 31);
  }

  has(code: number): boolean {
    return ((this.words[code >>> 5]! >>> (code & 31)) & 1) === 1;
  }

  /** This set's bits into `into` (same size). */
  copyTo(into: SeenCodes): SeenCodes {
    into.words.set(this.words);
    return into;
  }
}

/** u32 words of a SeenCodes bitmask over `visualCount` codes. */
export const seenWords = (visualCount: number): number => Math.ceil(visualCount / 32);

/** One seen id's logit after the penalty, in float32 (what the reference does: `where(s < 0, s·p, s / p)`). */
export function penalisedLogit(logit: number, penalty: number): number {
  return logit < 0 ? f(logit * f(penalty)) : f(logit / f(penalty));
}
