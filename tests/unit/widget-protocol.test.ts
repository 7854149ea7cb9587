// The widget's pure parts: its query string (origins, defaults, model options) and the
// validation of host messages, which decides what is answered and what is ignored.
import { describe, expect, test } from 'vitest';
import { DEFAULT_MODEL_SOURCE } from '../../src/client/model-source.ts';
import { DEFAULT_SETTINGS, resolveSettings } from '../../src/core/engine/settings.ts';
import type { GenerateParams } from '../../src/embed/protocol.ts';
import { parseOrigins, parseWidgetConfig } from '../../src/widget/config.ts';
import { readHostMessage } from '../../src/widget/host-channel.ts';
import { toFailure, WidgetRunner } from '../../src/widget/runner.ts';
import { EngineClient } from '../../src/client/engine-client.ts';
import { SimpleARError } from '../../src/core/base/errors.ts';

const BASE = 'https://simplear.example/embed.html';

describe('widget query string', () => {
  test('origins are normalized to scheme://host:port; none means no host may drive it', () => {
    expect(parseOrigins(null)).toEqual([]);
    expect(parseOrigins('https://a.example/path?q, http://127.0.0.2:8080 https://B.example:443')).toEqual([
      'https://a.example',
      'http://127.0.0.2:8080',
      'https://b.example',
    ]);
    expect(() => parseOrigins('*')).toThrow(/origins/);
    expect(() => parseOrigins('file:///x')).toThrow(/http\(s\)/);
  });

  test('defaults are the engine’s unless given, and are checked by the engine’s rules', () => {
    const plain = parseWidgetConfig('', BASE);
    expect(plain).toMatchObject({
      origins: [],
      source: DEFAULT_MODEL_SOURCE,
      defaults: { size: DEFAULT_SETTINGS.size, cfg: DEFAULT_SETTINGS.cfg, temperature: DEFAULT_SETTINGS.temperature },
      maxSize: 1024,
      load: { maxLatentSide: 64 },
      theme: 'auto',
      hidePrompt: false,
    });
    const tuned = parseWidgetConfig('?size=64&cfg=3&topP=0.9&maxSize=128&weights=f32&decoder=f32&theme=dark&hidePrompt=1&bundle=/b/', BASE);
    expect(tuned).toMatchObject({
      defaults: { size: 64, cfg: 3, topP: 0.9 },
      maxSize: 128,
      load: { maxLatentSide: 8, weights: 'f32', decoderDtype: 'f32' },
      theme: 'dark',
      hidePrompt: true,
      source: { kind: 'bundle', url: 'https://simplear.example/b/' },
    });
    expect(() => parseWidgetConfig('?size=100', BASE)).toThrow(/size/);
    expect(() => parseWidgetConfig('?size=512&maxSize=256', BASE)).toThrow(/maxSize/);
    expect(() => parseWidgetConfig('?cfg=lots', BASE)).toThrow(/cfg= must be a number/);
    expect(() => parseWidgetConfig('?weights=q3', BASE)).toThrow(/q4, q8, f16, f32/);
    expect(() => parseWidgetConfig('?theme=pink', BASE)).toThrow(/theme/);
  });

  test('count= is the own prompt box’s images per generation (1 unless given), checked by the engine’s rule', () => {
    expect(parseWidgetConfig('', BASE).count).toBe(1);
    expect(parseWidgetConfig('?count=4', BASE).count).toBe(4);
    for (const bad of ['0', '9', '2.5']) {
      expect(() => parseWidgetConfig(`?count=${bad}`, BASE)).toThrow(/count: must be a whole number from 1 to 8/);
    }
    expect(() => parseWidgetConfig('?count=two', BASE)).toThrow(/count= must be a number/);
  });

  test('repetitionPenalty= is a default only when given (else the model’s own), checked by the engine’s rule', () => {
    expect(parseWidgetConfig('', BASE).defaults.repetitionPenalty).toBeUndefined();
    expect(parseWidgetConfig('?repetitionPenalty=1.3', BASE).defaults.repetitionPenalty).toBe(1.3);
    expect(() => parseWidgetConfig('?repetitionPenalty=0', BASE)).toThrow(/repetitionPenalty: must be above 0/);
  });
});

describe('host messages', () => {
  test('other scripts’ messages are not ours: ignored without a reply', () => {
    for (const data of [null, 'simplear:generate', 42, { type: 'webpackOk' }, { hello: 1 }]) expect(readHostMessage(data)).toBeNull();
  });

  test('generate and cancel are read field by field; extra fields are dropped', () => {
    expect(readHostMessage({ type: 'simplear:generate', id: 'a', prompt: 'fox', size: 64, seed: 5, evil: '<script>' })).toEqual({
      type: 'simplear:generate',
      id: 'a',
      prompt: 'fox',
      size: 64,
      seed: 5,
    });
    expect(readHostMessage({ type: 'simplear:cancel', id: 3 })).toEqual({ type: 'simplear:cancel', id: 3 });
    // An empty negative prompt is kept as "" (the null condition), and the penalty is read.
    expect(readHostMessage({ type: 'simplear:generate', id: 'b', prompt: 'fox', negativePrompt: '', repetitionPenalty: 1.3 })).toEqual({
      type: 'simplear:generate',
      id: 'b',
      prompt: 'fox',
      negativePrompt: '',
      repetitionPenalty: 1.3,
    });
    expect(readHostMessage({ type: 'simplear:generate', id: 1, prompt: 'x', repetitionPenalty: '2' })).toEqual({ malformed: 'repetitionPenalty must be a number', id: 1 });
  });

  test('count is read as a number; keep as {codes, rows} (an array or an Int32Array), extra fields dropped', () => {
    expect(readHostMessage({ type: 'simplear:generate', id: 'c', prompt: 'fox', count: 4 })).toEqual({ type: 'simplear:generate', id: 'c', prompt: 'fox', count: 4 });
    expect(readHostMessage({ type: 'simplear:generate', id: 'c', prompt: 'fox', count: '4' })).toEqual({ malformed: 'count must be a number', id: 'c' });
    // The range is the runner's (InvalidSettings, below): here a number is a number.
    expect(readHostMessage({ type: 'simplear:generate', id: 'c', prompt: 'fox', count: 99 })).toMatchObject({ count: 99 });
    const codes = Int32Array.from([1, 2, 3, 4]);
    expect(readHostMessage({ type: 'simplear:generate', id: 'k', prompt: 'fox', keep: { codes, rows: 1, extra: true } })).toEqual({
      type: 'simplear:generate',
      id: 'k',
      prompt: 'fox',
      keep: { codes, rows: 1 },
    });
    expect(readHostMessage({ type: 'simplear:generate', id: 'k', prompt: 'fox', keep: { codes: [5, 6], rows: 0 } })).toMatchObject({ keep: { codes: [5, 6], rows: 0 } });
    const malformed = { malformed: 'keep must be {codes: an array (or Int32Array) of visual codes, rows: a number}', id: 'k' };
    for (const keep of [null, 5, { codes: 'abcd', rows: 1 }, { codes: [1, 2], rows: '1' }, { rows: 1 }, { codes: new Float32Array(4), rows: 1 }]) {
      expect(readHostMessage({ type: 'simplear:generate', id: 'k', prompt: 'fox', keep })).toEqual(malformed);
    }
  });

  test('malformed messages of the protocol say what is wrong (answered only when they carry an id)', () => {
    expect(readHostMessage({ type: 'simplear:generate', prompt: 'x' })).toEqual({ malformed: 'id must be a non-empty string or a number' });
    expect(readHostMessage({ type: 'simplear:generate', id: 1 })).toEqual({ malformed: 'prompt must be a string', id: 1 });
    expect(readHostMessage({ type: 'simplear:generate', id: 1, prompt: 'x', size: '64' })).toEqual({ malformed: 'size must be a number', id: 1 });
    expect(readHostMessage({ type: 'simplear:explode', id: 'k' })).toEqual({ malformed: 'unknown message type "simplear:explode"', id: 'k' });
  });

  test('failures keep the engine’s code; cancellation is Aborted; anything else is Internal', () => {
    expect(toFailure(new DOMException('Cancelled', 'AbortError'))).toMatchObject({ code: 'Aborted' });
    expect(toFailure(new SimpleARError('PromptTooLong', 'too long'))).toEqual({ code: 'PromptTooLong', message: 'too long' });
    // The field at fault travels with InvalidSettings, also from an error that crossed the worker.
    expect(toFailure(new SimpleARError('InvalidSettings', 'count: no', { field: 'count' }))).toEqual({ code: 'InvalidSettings', message: 'count: no', field: 'count' });
    expect(toFailure(Object.assign(new Error('keep: no'), { code: 'InvalidSettings', details: { field: 'keep' } }))).toEqual({ code: 'InvalidSettings', message: 'keep: no', field: 'keep' });
    expect(toFailure(Object.assign(new Error('no GPU'), { code: 'WebGPUUnavailable' }))).toEqual({ code: 'WebGPUUnavailable', message: 'no GPU' });
    expect(toFailure(new TypeError('boom'))).toEqual({ code: 'Internal', message: 'boom' });
  });
});

describe('widget runner', () => {
  test('bad settings are refused before anything starts (no worker, no download)', async () => {
    let started = 0;
    const client = new EngineClient({
      startWorker: () => {
        started++;
        throw new Error('this test starts no worker');
      },
    });
    const runner = new WidgetRunner(client, parseWidgetConfig('?size=64&maxSize=128', BASE), { storageAvailable: true });
    const progress = () => {};
    await expect(runner.run('a', { prompt: '  ' }, progress)).rejects.toMatchObject({ code: 'InvalidSettings', message: /prompt/ });
    await expect(runner.run('b', { prompt: 'fox', size: 100 }, progress)).rejects.toMatchObject({ code: 'InvalidSettings', message: /multiple of 16/ });
    await expect(runner.run('c', { prompt: 'fox', size: 256 }, progress)).rejects.toMatchObject({ code: 'InvalidSettings', message: /at most 128/ });
    await expect(runner.run('d', { prompt: 'fox', cfg: -1 }, progress)).rejects.toMatchObject({ code: 'InvalidSettings', message: /cfg/ });
    expect(started).toBe(0);
    expect(runner.busy).toBe(false);
    await expect(runner.run('e', { prompt: 'fox', repetitionPenalty: 11 }, progress)).rejects.toMatchObject({ code: 'InvalidSettings', message: /repetitionPenalty/ });
    // count: 1 … 8 whole images, refused naming the field (toFailure carries it to the host).
    for (const count of [0, 9, 2.5, Number.NaN]) {
      const error = await runner.run(`count ${count}`, { prompt: 'fox', count }, progress).catch((e: unknown) => e);
      expect(error).toMatchObject({ code: 'InvalidSettings', message: /count: must be a whole number from 1 to 8/ });
      expect(toFailure(error).field).toBe('count');
    }
    // keep: the engine's resolveKeep rules at the request's size (64 px: a 4×4 latent grid).
    const sixteen = Array.from({ length: 16 }, (_, i) => i);
    const keepErrors: [GenerateParams['keep'], RegExp][] = [
      [{ codes: sixteen, rows: 4 }, /rows must be a whole number from 0 to 3/],
      [{ codes: sixteen, rows: -1 }, /rows must be a whole number from 0 to 3/],
      [{ codes: sixteen.slice(0, 15), rows: 1 }, /the tokens are for another size: 15 codes/],
      [{ codes: [...sixteen.slice(0, 15), 64000], rows: 1 }, /code 15 is 64000/],
      [{ codes: [...sixteen.slice(0, 15), 1.5], rows: 1 }, /code 15 is 1.5/],
    ];
    for (const [i, [keep, message]] of keepErrors.entries()) {
      const error = await runner.run(`keep ${i}`, { prompt: 'fox', keep }, progress).catch((e: unknown) => e);
      expect(error).toMatchObject({ code: 'InvalidSettings', message });
      expect(toFailure(error).field).toBe('keep');
    }
    expect(started).toBe(0);
    expect(runner.busy).toBe(false);
  });

  test('count N: one engine call, N images in image order with seeds s + i, their codes, and progress that names the image', async () => {
    const calls: GenerateParams[] = [];
    const client = {
      prepareModel: async () => undefined,
      generateImages: async (params: GenerateParams, { onProgress }: { onProgress: (p: object) => void }) => {
        calls.push(params);
        const count = params.count ?? 1;
        onProgress({ phase: 'decode', done: 1, total: 16, gridSide: 4, image: 1, count });
        return Array.from({ length: count }, (_, i) => ({
          settings: resolveSettings({ ...params, seed: params.seed! + i }),
          codes: Int32Array.from({ length: 1 }, () => 100 + i),
          width: 16,
          height: 16,
          rgba: new Uint8Array(16 * 16 * 4).fill(i * 40),
          model: 'stub',
          image: { index: i, count },
          ...(params.keep ? { keptRows: params.keep.rows } : {}),
        }));
      },
    } as unknown as EngineClient;
    const runner = new WidgetRunner(client, parseWidgetConfig('?size=16&maxSize=16', BASE), { storageAvailable: true });
    const progress: unknown[][] = [];
    const images = await runner.run('a', { prompt: 'fox', seed: 41, count: 3 }, (...args) => progress.push(args));
    expect(calls).toHaveLength(1);
    expect(calls[0]).toMatchObject({ prompt: 'fox', seed: 41, count: 3 });
    expect(images.map(({ index, count, seed, codes }) => ({ index, count, seed, codes: [...codes] }))).toEqual([
      { index: 0, count: 3, seed: 41, codes: [100] },
      { index: 1, count: 3, seed: 42, codes: [101] },
      { index: 2, count: 3, seed: 43, codes: [102] },
    ]);
    expect(images.every((image) => image.png.type === 'image/png')).toBe(true);
    expect(progress).toContainEqual(['decode', 1, 16, { image: 1, count: 3 }]);
    // Left out, count is 1 (whatever ?count= the widget's own box uses): one image, index 0 of 1.
    const [one, ...rest] = await runner.run('b', { prompt: 'fox', seed: 5 }, () => {});
    expect(rest).toEqual([]);
    expect(one).toMatchObject({ index: 0, count: 1, seed: 5 });
    expect(calls[1]!.count).toBeUndefined();
  });

  test('the engine gets "" as the null condition, an absent negative prompt as absent, and the penalty as sent', async () => {
    const sent: GenerateParams[] = [];
    const client = {
      prepareModel: async () => undefined,
      generateImages: async (params: GenerateParams) => {
        sent.push(params);
        const settings = resolveSettings({ ...params, seed: params.seed ?? 7 });
        return [{ settings, codes: new Int32Array(1), width: 16, height: 16, rgba: new Uint8Array(16 * 16 * 4), model: 'stub' }];
      },
    } as unknown as EngineClient;
    const runner = new WidgetRunner(client, parseWidgetConfig('?size=16&maxSize=16', BASE), { storageAvailable: true });
    await runner.run('a', { prompt: 'fox', negativePrompt: '', repetitionPenalty: 1.3 }, () => {});
    await runner.run('b', { prompt: 'fox' }, () => {});
    expect(sent[0]).toMatchObject({ negativePrompt: '', repetitionPenalty: 1.3 });
    expect(sent[1]!.negativePrompt).toBeUndefined();
    expect(sent[1]!.repetitionPenalty).toBeUndefined();
  });
});
