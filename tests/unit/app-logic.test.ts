// The page's pure logic: which models a device is offered, the URL sources, the progress texts,
// the CPU time estimate, and the PNG a person downloads.
import { describe, expect, test } from 'vitest';
import type { DeviceFacts } from '../../src/core/runtime/device.ts';
import { CATALOG, largestWeightBytes, optionsFromUrl, sourceFromUrl, suitability } from '../../src/app/model-catalog.ts';
import { modelChoices } from '../../src/app/model-loader.ts';
import { planBackend } from '../../src/core/engine/capabilities.ts';
import { describeGeneration, describePrepare } from '../../src/app/progress-text.ts';
import { estimateMs, estimateText } from '../../src/app/cpu-estimate.ts';
import { encodeImagePng, imageFileName } from '../../src/app/image-export.ts';
import { formatDuration, formatRate } from '../../src/app/format.ts';
import { decodePng } from '../../src/core/image/png.ts';
import { resolveSettings } from '../../src/core/engine/settings.ts';
import { negativeFieldText, negativePromptFromField } from '../../src/app/negative-field.ts';
import { DEFAULT_NEGATIVE_TEXT, negativeText } from '../../src/core/model/prompt.ts';

function gpu(limit: number): DeviceFacts {
  return {
    ok: true,
    adapter: { vendor: 'x', architecture: 'y', device: '', description: '', isFallbackAdapter: false },
    features: { shaderF16: true, subgroups: true, timestampQuery: false, all: [] },
    limits: {
      maxBufferSize: limit,
      maxStorageBufferBindingSize: limit,
      maxStorageBuffersPerShaderStage: 10,
      maxComputeWorkgroupStorageSize: 32768,
      maxComputeInvocationsPerWorkgroup: 1024,
      maxComputeWorkgroupSizeX: 1024,
      maxComputeWorkgroupsPerDimension: 65535,
    },
    environment: { crossOriginIsolated: true, secureContext: true, hardwareConcurrency: 8 },
  };
}
const noGpu: DeviceFacts = {
  ok: false,
  code: 'WebGPUUnavailable',
  reason: 'no-adapter',
  message: 'none',
  environment: { crossOriginIsolated: true, secureContext: true, hardwareConcurrency: 8 },
};
const byId = (id: string) => CATALOG.find((e) => e.id === id)!;

describe('model catalog', () => {
  test('the 1.5B models are offered only when their largest weight fits one binding, and the reason is given', () => {
    const big = byId('simplear-1.5b-rl');
    const small = byId('simplear-0.5b-rl');
    const between = Math.floor((largestWeightBytes(small, 'q4', 'f16') + largestWeightBytes(big, 'q4', 'f16')) / 2);
    expect(suitability(small, gpu(between), 16)).toEqual({ ok: true });
    const refused = suitability(big, gpu(between), 16);
    expect(refused.ok).toBe(false);
    expect(!refused.ok && refused.reason).toMatch(/largest weight .* exceeds this GPU's buffer limit/);
    expect(suitability(big, gpu(2 ** 31), 16)).toEqual({ ok: true });
    expect(suitability(big, gpu(2 ** 31), 4).ok).toBe(false);
    expect(suitability(big, noGpu).ok).toBe(false);
    expect(suitability(small, noGpu).ok).toBe(true);
  });

  test('the estimate is the engine’s: the chosen weight format, and the text table (not the whole tied embedding) as the largest buffer', () => {
    const small = byId('simplear-0.5b-rl');
    // The text table of the split embedding: 151,672 rows × 896, 4-bit with an f16 scale per 32.
    expect(largestWeightBytes(small, 'q4', 'f16')).toBe(151_672 * 896 * (0.5 + 2 / 32) + 896 * 4);
    expect(largestWeightBytes(small, 'f16', 'f16')).toBe(151_672 * 896 * 2 + 896 * 4);
    // A limit the whole embedding (215,672 rows) would exceed but the text table fits: offered,
    // and the engine's plan takes it.
    const wholeEmbedding = 215_672 * 896 * (0.5 + 2 / 32);
    const limit = Math.floor((largestWeightBytes(small, 'q4', 'f16') + wholeEmbedding) / 2);
    expect(suitability(small, gpu(limit), 16, 'q4')).toEqual({ ok: true });
    expect(() => planBackend({ lm: small.lm, weights: 'q4', decoderParams: 0 }, { backend: 'auto' }, gpu(limit))).not.toThrow();
    // f16 weights do not fit that GPU's buffers, so with ?weights=f16 the model is not offered,
    // for the reason the engine would give.
    const f16 = suitability(small, gpu(limit), 16, 'f16');
    expect(f16.ok).toBe(false);
    expect(() => planBackend({ lm: small.lm, weights: 'f16', decoderParams: 0 }, { backend: 'auto' }, gpu(limit))).toThrow(!f16.ok ? f16.reason.slice(0, 40) : '');
    const { choices } = modelChoices(new URLSearchParams('weights=f16'), 'http://localhost/', gpu(limit), 16);
    expect(choices.find((c) => c.key === small.id)!.unavailable).toMatch(/f16 weights/);
    expect(modelChoices(new URLSearchParams(''), 'http://localhost/', gpu(limit), 16).choices.find((c) => c.key === small.id)!.unavailable).toBeUndefined();
    // Past ONNX's 2 GiB per model: the 1.5B with f16 weights is refused even on a large GPU.
    expect(suitability(byId('simplear-1.5b-rl'), gpu(2 ** 31), 16, 'f16')).toMatchObject({ ok: false, reason: expect.stringMatching(/2 GiB/) });
    // Without WebGPU, the wasm heap decides: f32 weights of the 0.5B do not fit 4 GiB.
    expect(suitability(small, noGpu, 16, 'f32')).toMatchObject({ ok: false, reason: expect.stringMatching(/WebAssembly/) });
  });

  test('?model=&vq= and ?bundle= name mirrors (relative URLs resolved, folders end in /); bad ones explain', () => {
    const base = 'http://localhost:4173/app/';
    const original = sourceFromUrl(new URLSearchParams('model=http://m.test/a&vq=../vq'), base);
    expect(original).toMatchObject({ source: { kind: 'original', model: 'http://m.test/a/', vq: 'http://localhost:4173/vq/' } });
    expect(sourceFromUrl(new URLSearchParams('bundle=b1'), base)).toMatchObject({ source: { kind: 'bundle', url: 'http://localhost:4173/app/b1/' } });
    expect(sourceFromUrl(new URLSearchParams(''), base)).toBeNull();
    expect(sourceFromUrl(new URLSearchParams('model=ftp://x'), base)).toMatchObject({ error: expect.stringMatching(/http\(s\)/) });
    expect(optionsFromUrl(new URLSearchParams('weights=f32&decoder=f32'))).toMatchObject({ weights: 'f32', decoderDtype: 'f32' });
    expect(optionsFromUrl(new URLSearchParams('weights=bogus')).weights).toBeUndefined();
  });
});

describe('progress texts', () => {
  test('download: bytes of total, percent, speed and ETA as measured', () => {
    const r = describePrepare({ phase: 'download', bytes: 3 * 2 ** 20, totalBytes: 12 * 2 ** 20, fetchedBytes: 2 ** 20, bytesPerSecond: 2 ** 20, etaMs: 9000, file: 'model.safetensors' });
    expect(r).toEqual({ title: 'Downloading model.safetensors', detail: '3 MiB of 12 MiB (25 %) · 1 MiB/s · about 9.0 s left', fraction: 0.25 });
    expect(describePrepare({ phase: 'convert', step: 'decoder', done: 1, total: 4 }).fraction).toBe(0.25);
  });

  test('generation: rows, tokens/s and ETA; prompt and pixel phases have no fake fraction', () => {
    const r = describeGeneration({ phase: 'decode', done: 40, total: 64, gridSide: 8, elapsedMs: 1000, tokensPerSecond: 40, etaMs: 600 });
    expect(r).toEqual({ title: 'Drawing row 5 of 8', detail: '40 of 64 tokens · 40 tokens/s · about 0.6 s left', fraction: 0.625 });
    expect(describeGeneration({ phase: 'prefill', done: 0, total: 1, gridSide: 8, elapsedMs: 10 }).fraction).toBeNull();
  });

  test('durations and rates read naturally', () => {
    expect(formatDuration(185_000)).toBe('3 min 05 s');
    expect(formatDuration(3_720_000)).toBe('1 h 02 min');
    expect(formatRate(1536)).toBe('1.5 KiB/s');
  });
});

test('the CPU estimate scales the measured probe and says it is a lower bound', () => {
  const probe = { prefillMs: 2000, msPerToken: 500, tokens: 16 };
  expect(estimateMs(probe, 1024)).toBe(2000 + 4096 * 500);
  const text = estimateText(probe, [1024]);
  expect(text).toContain('Measured on this device');
  expect(text).toContain('500 ms per token (a 16-token test image)');
  expect(text).toMatch(/1024 px \(4096 tokens\): at least 34 min 10 s/);
  expect(text).toMatch(/expect more/);
});

test('the downloaded PNG carries the settings in its text chunks, and its name says what it is', () => {
  const settings = resolveSettings({ prompt: 'A red fox, in the snow!', size: 32, seed: 77, cfg: 4.5 });
  const rgba = new Uint8Array(2 * 2 * 4).map((_, i) => i * 7);
  const png = decodePng(encodeImagePng(rgba, 2, 2, settings, 'tiny'));
  expect(png.channels).toBe(3);
  expect(Array.from(png.data)).toEqual(Array.from(rgba).filter((_, i) => i % 4 !== 3));
  expect(png.text).toMatchObject({ prompt: 'A red fox, in the snow!', seed: '77', cfg: '4.5', size: '32x32', model: 'tiny', Software: 'simplear-web' });
  expect(imageFileName(settings)).toBe('simplear-a-red-fox-in-the-snow-77.png');
});

test('the page’s negative-prompt field means what the CLI, the widget and the API mean: "" is the null condition, the default text is the default', () => {
  // The field starts with SimpleAR's own negative prompt, which reads as "the default" (absent).
  expect(negativeFieldText(undefined)).toBe(DEFAULT_NEGATIVE_TEXT);
  expect(negativePromptFromField(negativeFieldText(undefined))).toBeUndefined();
  expect(negativePromptFromField(` ${DEFAULT_NEGATIVE_TEXT}\n`)).toBeUndefined();
  // Cleared: "", which the engine encodes as <|t2i|><|soi|> (prompt.ts), as it does the API's "".
  expect(negativePromptFromField('')).toBe('');
  expect(negativePromptFromField('   ')).toBe('');
  expect(negativeText(negativePromptFromField(''))).toBe('<|t2i|><|soi|>');
  expect(resolveSettings({ prompt: 'x', seed: 1, negativePrompt: negativePromptFromField('') }).negativePrompt).toBe('');
  expect(negativePromptFromField(' blurry ')).toBe('blurry');
  // A re-run fills the field back with what the image used.
  expect(negativeFieldText('')).toBe('');
  expect(negativeFieldText('blurry')).toBe('blurry');
});

test('the PNG records the repetition penalty the engine used', () => {
  const settings = resolveSettings({ prompt: 'x', seed: 1, size: 32, repetitionPenalty: 1.3 });
  const png = decodePng(encodeImagePng(new Uint8Array(2 * 2 * 4), 2, 2, settings, 'tiny'));
  expect(png.text).toMatchObject({ 'repetition penalty': '1.3' });
});
