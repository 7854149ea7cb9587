import { beforeAll, describe, expect, it } from 'vitest';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { TokenizerLoader } from '@lenml/tokenizers';
import {
  createTokenizer,
  loadTokenizer,
  qwen2TokenizerJson,
  tokenizerLength,
  type TextTokenizer,
} from '../../src/core/formats/tokenizer.ts';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { openFolder } from '../../src/core/formats/byte-source.ts';
import { SimpleARError } from '../../src/core/base/errors.ts';
import { simplearQwenTokenizerFiles, SIMPLEAR_SPECIALS, QWEN25_LEN } from '../helpers/qwen-tokenizer.ts';

// [text, ids] from tools/fixtures/bpe_tokenizer.py (Python, independent of the JS code) run on
// the SimpleAR Qwen vocabulary built by tests/helpers/qwen-tokenizer.ts.
const PYTHON_REFERENCE: [string, number[]][] = [
  ["a red cat", [64, 2518, 8251]],
  ["A photo of an astronaut riding a horse on the moon.", [32, 6548, 315, 458, 46633, 19837, 264, 15223, 389, 279, 17788, 13]],
  ["It's a dog's life; they're here, we'll see, I'd go, you've done, I'm fine", [2132, 594, 264, 5562, 594, 2272, 26, 807, 2299, 1588, 11, 582, 3278, 1490, 11, 358, 4172, 728, 11, 498, 3003, 2814, 11, 358, 2776, 6915]],
  ["DON'T STOP, IT'S FINE, THEY'RE HERE, WE'LL GO, I'M OK, YOU'VE WON, HE'D SAY", [84641, 17323, 45537, 11, 8700, 13272, 434, 3981, 11, 62493, 94153, 19249, 11, 19677, 6, 4086, 12604, 11, 358, 27603, 10402, 11, 14985, 6, 4491, 97367, 11, 11685, 27705, 84629]],
  ["numbers 1234567890 and 3.14159, 2024-01-01, 1,000,000", [37378, 220, 16, 17, 18, 19, 20, 21, 22, 23, 24, 15, 323, 220, 18, 13, 16, 19, 16, 20, 24, 11, 220, 17, 15, 17, 19, 12, 15, 16, 12, 15, 16, 11, 220, 16, 11, 15, 15, 15, 11, 15, 15, 15]],
  ["multiple   spaces    here", [35673, 256, 12621, 262, 1588]],
  [" leading space", [6388, 3550]],
  ["trailing spaces   ", [376, 14277, 12621, 262]],
  ["line1\nline2\r\nline3\n\n\nend\n", [1056, 16, 198, 1056, 17, 319, 1056, 18, 1406, 408, 198]],
  ["tabs\tand\t\tmore \t mixed", [30993, 52477, 197, 2109, 460, 7018, 9519]],
  ["caf\u00e9 na\u00efve r\u00e9sum\u00e9 \u00fcber Stra\u00dfe", [924, 58858, 94880, 586, 9333, 1242, 963, 13785, 26647, 23455]],
  ["e\u0301cole, A\u030angstro\u0308m", [134670, 11, 79252, 968, 495, 85584]],
  ["\u03a9\u2248\u00e7\u221a\u222b\u02dc\u00b5\u2264\u2265\u00f7 \u00bd \u216b \u00b2 \u00b3", [144572, 144540, 3131, 144336, 145706, 144775, 73048, 144570, 144481, 144422, 220, 26062, 220, 70467, 104, 220, 29456, 220, 43201]],
  ["\u4e1c\u4eac\u7684\u4e00\u53ea\u7ea2\u8272\u7684\u732b\u5728\u96ea\u5730\u91cc", [107513, 99774, 91680, 104165, 9370, 100472, 18493, 100167, 29490, 69249]],
  ["\u65e5\u672c\u8a9e\u306e\u30c6\u30ad\u30b9\u30c8\u3068\u30ab\u30bf\u30ab\u30ca\u3001\u3072\u3089\u304c\u306a\u3002", [101059, 102819, 15767, 56833, 61803, 70534, 19182, 70393, 46207, 70393, 95352, 5373, 124877, 32403, 28195, 25770, 1773]],
  ["\ud55c\uad6d\uc5b4 \ubb38\uc7a5\uc785\ub2c8\ub2e4", [23573, 124785, 31079, 53435, 40853, 78952]],
  ["\u041f\u0440\u0438\u0432\u0435\u0442, \u043c\u0438\u0440! \u041a\u0430\u043a \u0434\u0435\u043b\u0430?", [53645, 26991, 8178, 11, 137144, 0, 128654, 129691, 30]],
  ["\u0645\u0631\u062d\u0628\u0627 \u0628\u0627\u0644\u0639\u0627\u0644\u0645", [124122, 29825, 124671, 124476, 129634]],
  ["emoji \ud83d\udc31\ud83d\udc36\ud83e\udd8a and \ud83d\udc68\u200d\ud83d\udc69\u200d\ud83d\udc67\u200d\ud83d\udc66 family and flags \ud83c\uddef\ud83c\uddf5 and \u2764\ufe0f", [37523, 11162, 238, 109, 145549, 147440, 323, 61804, 101, 378, 235, 145233, 378, 235, 145665, 378, 235, 145988, 2997, 323, 8042, 11162, 229, 107, 145516, 323, 70470, 30543]],
  ["mixed \u4e2d\u6587English123\u6df7\u5408\u30c6\u30b9\u30c8", [56685, 72858, 16744, 22574, 16, 17, 18, 105063, 140592]],
  ["punctuation!!! ??? ... --- *** ### @@@ (parens) [brackets] {braces}", [79, 72299, 12069, 51317, 2503, 12448, 17160, 16600, 569, 19191, 320, 3380, 4412, 8, 508, 1323, 18382, 60, 314, 1323, 2434, 92]],
  ["code: const x = a[i] + b{j}; // comment", [1851, 25, 733, 856, 284, 264, 989, 60, 488, 293, 71043, 11061, 442, 3980]],
  ["URL https://example.com/path?q=1&r=2#frag and email a.b@c.de", [3144, 3703, 1110, 8687, 905, 50976, 43782, 28, 16, 60617, 28, 17, 2, 33198, 323, 2551, 264, 948, 89916, 2285]],
  ["non\u00a0breaking\u3000ideographic\u2003em space", [6280, 4102, 36657, 22441, 94007, 378, 225, 336, 3550]],
  ["   ", [262]],
  ["\n", [198]],
  ["special inside <|t2i|> prompt <|soi|> text <|endoftext|>", [15144, 4766, 220, 151665, 9934, 220, 151667, 1467, 220, 151643]],
  ["looks like special <|t2i but not <|soi| and <|unknown|> nor < |t2i|>", [94273, 1075, 3281, 82639, 83, 17, 72, 714, 537, 82639, 704, 72, 91, 323, 82639, 16088, 91, 29, 6329, 366, 760, 83, 17, 72, 91, 29]],
  ["A cinematic shot of a baby racoon wearing an intricate italian priest robe, highly detailed, 8k, octane render, trending on artstation", [32, 64665, 6552, 315, 264, 8770, 8971, 9009, 12233, 458, 56116, 27948, 27086, 62619, 11, 7548, 11682, 11, 220, 23, 74, 11, 18491, 2145, 3141, 11, 50850, 389, 1947, 20155]],
  ["'s 't 're 've 'm 'll 'd 'S 'T 'RE", [594, 364, 83, 364, 265, 364, 586, 364, 76, 364, 654, 364, 67, 364, 50, 364, 51, 364, 787]],
  ["a  b   c    d     e      f", [64, 220, 293, 256, 272, 262, 294, 257, 384, 414, 282]],
  ["UPPER lower MiXeD CamelCase snake_case kebab-case", [3124, 9654, 4722, 20740, 55, 68, 35, 68154, 4207, 25265, 19096, 1962, 47722, 38485]],
  ["x\r\ny\r\n\r\nz   ", [87, 319, 88, 871, 89, 262]],
  ["\t\n \n\t", [1572, 715, 197]],
  ["An image of aerial view, overexposed, low quality, deformation, a poor composition, bad hands, bad teeth, bad eyes, bad limbs, distortion", [2082, 2168, 315, 40784, 1651, 11, 916, 327, 3865, 11, 3347, 4271, 11, 90521, 11, 264, 7852, 18037, 11, 3873, 6078, 11, 3873, 17832, 11, 3873, 6414, 11, 3873, 48595, 11, 49871]],
];

/** Prompts beyond the Python table: things only JS strings can hold, long inputs, edge cases. */
const EXTRA_PROMPTS = [
  '',
  'a'.repeat(500),
  'word '.repeat(300),
  '🐱'.repeat(50),
  '1'.repeat(40),
  '<|t2i|><|t2i|><|soi|><|soi|>',
  '<|im_start|>user\nhi<|im_end|>',
  'tab\tnewline\nreturn\rvertical\u000bform\u000cnext\u0085line\u2028para\u2029',
  'zero\u200bwidth\u200djoiner\ufeffbom',
  'combining a\u0300\u0301\u0302 and Hangul jamo \u1100\u1161\u11a8',
  'astral 𝔘𝔫𝔦𝔠𝔬𝔡𝔢 𝟙𝟚𝟛 𠀀𠀁',
];

let qwen: TextTokenizer;
let lenml: ReturnType<typeof TokenizerLoader.fromPreTrained>;

beforeAll(() => {
  const files = simplearQwenTokenizerFiles();
  qwen = createTokenizer(files, 'qwen/tokenizer.json');
  lenml = TokenizerLoader.fromPreTrained({
    tokenizerJSON: files.tokenizerJson as never,
    tokenizerConfig: files.tokenizerConfig as never,
  });
});

describe('tokenizer on the real Qwen vocabulary + SimpleAR specials', () => {
  it('has len(tokenizer) = 151672 and the SimpleAR special ids (docs/model.md#vocabulary-layout)', () => {
    expect(qwen.length).toBe(151672);
    expect(qwen.specialIds).toEqual({ t2i: 151665, soi: 151667, endOfText: 151643 });
    SIMPLEAR_SPECIALS.forEach((t, i) => expect(qwen.tokenId(t)).toBe(QWEN25_LEN + i));
    expect(qwen.tokenId('<|im_end|>')).toBe(151645);
  });

  it.each(PYTHON_REFERENCE)('encodes %j exactly like the Python reference BPE', (text, ids) => {
    expect(qwen.encode(text)).toEqual(ids);
  });

  it.each([...PYTHON_REFERENCE.map(([t]) => t), ...EXTRA_PROMPTS])(
    'agrees with the independent @lenml/tokenizers implementation on %j',
    (text) => {
      expect(qwen.encode(text)).toEqual(lenml.encode(text, { add_special_tokens: false }));
    },
  );

  it.each([...PYTHON_REFERENCE.map(([t]) => t), ...EXTRA_PROMPTS])('decodes back to the (NFC) text: %j', (text) => {
    expect(qwen.decode(qwen.encode(text))).toBe(text.normalize('NFC'));
  });

  it('splits special tokens out verbatim, even glued to words, and adds no BOS/EOS', () => {
    expect(qwen.encode('<|t2i|>')).toEqual([151665]);
    expect(qwen.encode('<|t2i|><|soi|>')).toEqual([151665, 151667]);
    const ids = qwen.encode('x<|soi|>y');
    expect(ids).toEqual([...qwen.encode('x'), 151667, ...qwen.encode('y')]);
    expect(qwen.encode('hello')).toEqual([14990]);
    expect(qwen.encode('')).toEqual([]);
  });

  it('never emits an id outside [0, length)', () => {
    for (const [text] of PYTHON_REFERENCE) {
      for (const id of qwen.encode(text)) expect(id >= 0 && id < qwen.length).toBe(true);
    }
  });

  it('decode can skip special tokens', () => {
    const ids = qwen.encode('<|t2i|>a red cat<|soi|>');
    expect(qwen.decode(ids)).toBe('<|t2i|>a red cat<|soi|>');
    expect(qwen.decode(ids, { skipSpecialTokens: true })).toBe('a red cat');
    expect(qwen.decode([])).toBe('');
  });
});

describe('tokenizer errors and length', () => {
  it('a missing SimpleAR special token is a typed error naming the token', () => {
    const files = simplearQwenTokenizerFiles();
    const tj = files.tokenizerJson as { added_tokens: { content: string }[] };
    tj.added_tokens = tj.added_tokens.filter((t) => t.content !== '<|soi|>');
    let err: unknown;
    try {
      createTokenizer(files, 'x/tokenizer.json');
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(SimpleARError);
    expect((err as SimpleARError).code).toBe('ModelFileInvalid');
    expect((err as Error).message).toMatch(/x\/tokenizer\.json.*<\|soi\|>/);
  });

  it('plain Qwen2.5 (no SimpleAR tokens) is rejected: <|t2i|> is missing', () => {
    const files = simplearQwenTokenizerFiles();
    const tj = files.tokenizerJson as { added_tokens: { id: number }[] };
    tj.added_tokens = tj.added_tokens.filter((t) => t.id < QWEN25_LEN);
    expect(() => createTokenizer(files)).toThrow(/<\|t2i\|>/);
  });

  it('length is max id + 1 over vocab and added tokens', () => {
    expect(tokenizerLength({ model: { vocab: { a: 0, b: 5 } }, added_tokens: [{ id: 9, content: 'x' }] })).toBe(10);
    expect(tokenizerLength({ model: { vocab: { a: 0, b: 5 } } })).toBe(6);
    expect(() => tokenizerLength({ model: {} })).toThrow(/vocab/);
    expect(() => tokenizerLength({ model: { vocab: { a: 'x' } } })).toThrow(SimpleARError);
  });

  it('a file that is not a tokenizer.json is a ModelFileError', () => {
    expect(() => createTokenizer({ tokenizerJson: { hello: 1 }, tokenizerConfig: {} })).toThrow(/not a tokenizer\.json/);
    expect(() => createTokenizer({ tokenizerJson: null, tokenizerConfig: {} })).toThrow(SimpleARError);
  });
});

/** The files `Qwen2Tokenizer.save_pretrained` (slow) writes: no tokenizer.json. */
async function writeSlowTokenizerFiles(dir: string, tj: any, tc: any, withDecoder: boolean) {
  await writeFile(join(dir, 'vocab.json'), JSON.stringify(tj.model.vocab));
  const merges = (tj.model.merges as (string | string[])[]).map((m) => (Array.isArray(m) ? m.join(' ') : m));
  await writeFile(join(dir, 'merges.txt'), `#version: 0.2\n${merges.join('\n')}\n`);
  const added: Record<string, number> = {};
  for (const t of tj.added_tokens) added[t.content] = t.id;
  await writeFile(join(dir, 'added_tokens.json'), JSON.stringify(added));
  const config = { ...tc };
  if (!withDecoder) delete config.added_tokens_decoder;
  await writeFile(join(dir, 'tokenizer_config.json'), JSON.stringify(config));
}

describe('slow-tokenizer checkpoints (vocab.json + merges.txt, no tokenizer.json)', () => {
  it("rebuild HF's Qwen2Converter output: same pre-tokenizer as Qwen's tokenizer.json", () => {
    const { tokenizerJson } = simplearQwenTokenizerFiles() as any;
    const rebuilt = qwen2TokenizerJson({ a: 0 }, '#version: 0.2\na a\n', null, {});
    expect(rebuilt.pre_tokenizer).toEqual(tokenizerJson.pre_tokenizer);
    expect(rebuilt.normalizer).toEqual(tokenizerJson.normalizer);
    expect(rebuilt.decoder).toEqual(tokenizerJson.decoder);
    expect((rebuilt.model as any).merges).toEqual([['a', 'a']]);
  });

  it.each([true, false])('encode exactly like tokenizer.json (added_tokens_decoder in config: %s)', async (withDecoder) => {
    const dir = await mkdtemp(join(tmpdir(), 'slow-tok-'));
    try {
      const files = simplearQwenTokenizerFiles();
      await writeSlowTokenizerFiles(dir, files.tokenizerJson, files.tokenizerConfig, withDecoder);
      const slow = await loadTokenizer(openFolder(dir));
      expect(slow.length).toBe(151672);
      expect(slow.specialIds).toEqual(qwen.specialIds);
      for (const [text, ids] of PYTHON_REFERENCE) expect(slow.encode(text)).toEqual(ids);
      for (const text of EXTRA_PROMPTS) expect(slow.encode(text)).toEqual(qwen.encode(text));
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('a folder with no tokenizer files at all is ModelFileMissing', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'no-tok-'));
    try {
      await expect(loadTokenizer(openFolder(dir))).rejects.toMatchObject({ code: 'ModelFileMissing' });
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

// The tiny fixture checkpoint (tools/fixtures/make_fixtures.py) and its golden prompt ids.
const FIXTURES = join(import.meta.dirname, '../fixtures');
const GOLDEN = join(FIXTURES, 'golden/golden.json');

describe('tokenizer of the tiny fixture checkpoint', () => {
  const golden = () => JSON.parse(readFileSync(GOLDEN, 'utf8'));

  it('loads from the checkpoint folder with the golden length and special ids', async () => {
    const g = golden();
    for (const ckpt of g.tokenizer.checkpoints as string[]) {
      const tok = await loadTokenizer(openFolder(join(FIXTURES, ckpt)));
      expect(tok.length).toBe(g.tokenizer.len);
      expect(tok.specialIds).toEqual({
        t2i: g.tokenizer.special_tokens['<|t2i|>'],
        soi: g.tokenizer.special_tokens['<|soi|>'],
        endOfText: g.tokenizer.special_tokens['<|endoftext|>'],
      });
      for (const [t, id] of Object.entries(g.tokenizer.special_tokens)) expect(tok.tokenId(t)).toBe(id);
    }
  });

  it('reproduces every golden tokenizer case exactly (ids and pieces)', async () => {
    const g = golden();
    const tok = await loadTokenizer(openFolder(join(FIXTURES, 'tiny-simplear')));
    expect(g.tokenizer.cases.length).toBeGreaterThan(0);
    for (const c of g.tokenizer.cases as { text: string; ids: number[]; tokens: string[] }[]) {
      expect(tok.encode(c.text), JSON.stringify(c.text)).toEqual(c.ids);
      expect(c.ids.map((id) => tok.idToken(id))).toEqual(c.tokens);
      expect(tok.decode(c.ids)).toBe(c.text.normalize('NFC'));
    }
  });
  it('gives the same golden ids when rebuilt from vocab.json + merges.txt + added_tokens.json', async () => {
    const g = golden();
    const src = join(FIXTURES, 'tiny-simplear');
    const dir = await mkdtemp(join(tmpdir(), 'slow-fixture-'));
    try {
      const tj = JSON.parse(readFileSync(join(src, 'tokenizer.json'), 'utf8'));
      const tc = JSON.parse(readFileSync(join(src, 'tokenizer_config.json'), 'utf8'));
      await writeSlowTokenizerFiles(dir, tj, tc, false);
      await writeFile(join(dir, 'added_tokens.json'), readFileSync(join(src, 'added_tokens.json')));
      const tok = await loadTokenizer(openFolder(dir));
      expect(tok.length).toBe(g.tokenizer.len);
      for (const c of g.tokenizer.cases as { text: string; ids: number[] }[]) expect(tok.encode(c.text)).toEqual(c.ids);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
