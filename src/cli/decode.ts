// `simplear decode`: a square grid of visual tokens (tokens.json) → a PNG, with the decoder of a
// converted bundle loaded alone into the Node engine host (EngineHost.loadDecoder: no LM weights
// read), on onnxruntime-node (f32 activations by default; pixels as docs/model.md#pixels, RGB). With
// --activations f16 the decoder checks its activations and decodes again in f32 when they
// overflow, and says so.
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';
import { SimpleARError } from '../core/base/errors.ts';
import { encodePng, rgbaToRgb } from '../core/image/png.ts';
import { VISUAL_CODES } from '../core/base/model-spec.ts';
import { CPU_DECODER_BAND_BYTES } from '../core/engine/create-cpu.ts';
import { tempModelFiles } from './model-files.ts';
import { createNodeEngineHost } from './node-host.ts';
import { resolveLocation, type CommandModule } from './command.ts';
import { formatSeconds } from './progress.ts';

/** tokens.json: a JSON array of codes 0..63999, raster order, square. Returns the codes and side. */
export function parseTokenGrid(text: string, file: string): { codes: number[]; side: number } {
  const bad = (problem: string, details: Record<string, unknown> = {}): never => {
    throw new SimpleARError('InvalidSettings', `${file}: ${problem}`, { file, ...details });
  };
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    bad(`not valid JSON (${(e as Error).message})`);
  }
  if (!Array.isArray(json)) return bad('expected a JSON array of visual codes');
  if (json.length === 0) bad('the array is empty');
  json.forEach((v, i) => {
    if (typeof v !== 'number' || !Number.isInteger(v) || v < 0 || v >= VISUAL_CODES) {
      bad(`element ${i} is ${JSON.stringify(v)}: visual codes are integers 0..${VISUAL_CODES - 1}`, { index: i });
    }
  });
  const side = Math.round(Math.sqrt(json.length));
  if (side * side !== json.length) {
    bad(`${json.length} codes do not form a square grid (n×n codes in raster order, e.g. 4096 = 64×64)`, { count: json.length });
  }
  return { codes: json as number[], side };
}

const command: CommandModule = {
  usage: '--bundle <dir|url> --tokens <tokens.json> --out <image.png>',
  description: [
    'Decodes visual tokens to an image with the Cosmos decoder of a converted bundle, on the CPU',
    '(onnxruntime-node). tokens.json is a JSON array of visual codes 0..63999 in raster order',
    'forming a square grid (64×64 codes give a 1024×1024 image; each code is 16×16 pixels).',
    'The PNG is RGB, 8 bits per channel: round((clamp(x, −1, 1) + 1) / 2 · 255).',
  ].join('\n'),
  options: {
    bundle: { type: 'string', short: 'b', arg: '<dir|url>', description: 'the converted model bundle', required: true },
    tokens: { type: 'string', short: 't', arg: '<tokens.json>', description: 'the grid of visual codes', required: true },
    out: { type: 'string', short: 'o', arg: '<image.png>', description: 'the PNG to write', required: true },
    activations: {
      type: 'string',
      arg: 'f32|f16',
      description: 'decoder activations (default f32); f16 reruns in f32 when its activations overflow',
      choices: ['f32', 'f16'],
    },
    'band-mib': {
      type: 'string',
      arg: '<MiB>',
      description: `decode in bands of rows, each stage's activations within this many MiB, when a whole-image activation is larger (default ${CPU_DECODER_BAND_BYTES / 2 ** 20}: whole)`,
    },
  },

  async run(values, io) {
    const tokensFile = values.tokens as string;
    let text: string;
    try {
      text = await readFile(tokensFile, 'utf8');
    } catch (e) {
      throw new SimpleARError('InvalidSettings', `${tokensFile}: cannot read (${(e as Error).message})`, { file: tokensFile });
    }
    const { codes, side } = parseTokenGrid(text, tokensFile);

    const started = performance.now();
    const bandMib = values['band-mib'] === undefined ? CPU_DECODER_BAND_BYTES / 2 ** 20 : Number(values['band-mib']);
    if (!(bandMib >= 0)) throw new SimpleARError('InvalidSettings', `--band-mib: a number of MiB ≥ 0 (got ${String(values['band-mib'])})`, { field: 'band-mib' });
    const host = createNodeEngineHost({ files: tempModelFiles });
    let image;
    let bandBytes: number | undefined;
    try {
      ({ bandBytes } = await host.loadDecoder(resolveLocation(values.bundle as string), {
        activations: values.activations === 'f16' ? 'f16' : 'f32',
        bandBytes: bandMib * 2 ** 20,
        maxSide: side,
        ...(io.signal ? { signal: io.signal } : {}),
      }));
      image = await host.decode(Int32Array.from(codes), side);
    } finally {
      await host.dispose();
    }
    const png = encodePng({ width: image.width, height: image.height, channels: 3, data: rgbaToRgb(image.rgba) });
    const out = values.out as string;
    await mkdir(dirname(resolve(out)), { recursive: true });
    await writeFile(out, png);
    if (image.fallback) io.stdout.write(`decoder: f16 activations overflowed (${image.fallback.reason}); decoded again in f32\n`);
    const bands = bandBytes !== undefined ? ` (in bands of ≤ ${bandBytes / 2 ** 20} MiB activations)` : '';
    io.stdout.write(`wrote ${out}: ${image.width}×${image.height} from ${side}×${side} tokens in ${formatSeconds(performance.now() - started)}${bands}\n`);
  },
};

export default command;
