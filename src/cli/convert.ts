// `simplear convert`: the original checkpoints (local folders or base URLs) → a model bundle
// directory, written atomically (a failure or Ctrl-C leaves nothing at --out).
import { openFolder } from '../core/formats/byte-source.ts';
import { createNodeBundleSink } from '../core/bundle/node-sink.ts';
import { DEFAULT_DECODER_SOURCE, DEFAULT_MODEL_SOURCE, convertModel, type ConvertPhase, type ConvertProgress } from '../core/convert/convert-model.ts';
import type { LmWeightFormat } from '../core/model/quantize.ts';
import type { WeightDType } from '../core/model/decoder-weights.ts';
import { resolveLocation, type CommandModule } from './command.ts';
import { ProgressBar, formatBytes, formatSeconds, rate } from './progress.ts';

const PHASES: Record<ConvertPhase, string> = {
  open: 'reading the model description',
  decoder: 'decoder',
  preview: 'fitting the live-preview colours',
  lm: 'language model',
  finish: 'writing the manifest',
};

const command: CommandModule = {
  usage: '--model <dir|url> --vq <dir|url> --out <dir> [--weights q4|q8|f16|f32]',
  description: [
    'Reads a SimpleAR checkpoint (config.json, tokenizer files, safetensors, single or sharded) and',
    "the Cosmos DV8x16x16 tokenizer's decoder.jit, from local folders or any base URL (HTTP range",
    'requests), converts and quantizes the weights tensor by tensor, and writes a model bundle:',
    'chunk files + manifest.json. The bundle appears at --out only once it is complete.',
  ].join('\n'),
  options: {
    model: { type: 'string', arg: '<dir|url>', description: 'the SimpleAR checkpoint', default: DEFAULT_MODEL_SOURCE },
    vq: { type: 'string', arg: '<dir|url>', description: 'the folder holding decoder.jit', default: DEFAULT_DECODER_SOURCE },
    out: { type: 'string', short: 'o', arg: '<dir>', description: 'the bundle directory to create', required: true },
    weights: { type: 'string', arg: 'q4|q8|f16|f32', description: 'LM weights', default: 'q4', choices: ['q4', 'q8', 'f16', 'f32'] },
    'decoder-weights': { type: 'string', arg: 'f16|f32', description: 'decoder weights (default: f16; f32 with --weights f32)', choices: ['f16', 'f32'] },
    'fuse-decoder': { type: 'boolean', description: 'fuse each decoder 3x3 conv with its 1x1 conv (7% fewer FLOPs)' },
    force: { type: 'boolean', short: 'f', description: 'replace an existing bundle at --out' },
    quiet: { type: 'boolean', short: 'q', description: 'no progress on stderr' },
  },
  epilog: [
    'examples:',
    '  simplear convert --out bundles/simplear-0.5b-q4',
    '  simplear convert --model ./SimpleAR-0.5B-RL --vq ./Cosmos-DV8x16x16 --out ./bundle --weights f16',
  ].join('\n'),

  async run(values, io) {
    const model = resolveLocation(values.model as string);
    const vq = resolveLocation(values.vq as string);
    const out = values.out as string;
    const ort = await import('onnxruntime-node');
    const sink = await createNodeBundleSink(out, { overwrite: values.force === true });
    const bar = values.quiet ? null : new ProgressBar(io.stderr);
    const started = performance.now();
    let phaseStart = started;
    let phase: ConvertPhase | undefined;
    const onProgress = (p: ConvertProgress) => {
      if (!bar) return;
      if (p.phase !== phase) {
        if (phase === 'decoder' || phase === 'lm') bar.log(`${PHASES[phase]}: done in ${formatSeconds(performance.now() - phaseStart)}`);
        phase = p.phase;
        phaseStart = performance.now();
      }
      if (p.tensorsTotal === 0) return bar.update(PHASES[p.phase], undefined, '…');
      const detail = [
        `tensor ${p.tensors}/${p.tensorsTotal}`,
        `${formatBytes(p.bytes)}/${formatBytes(p.bytesTotal)}`,
        `${formatBytes(rate(p.bytes, phaseStart))}/s`,
      ].join('  ');
      bar.update(PHASES[p.phase], p.bytesTotal ? p.bytes / p.bytesTotal : p.tensors / p.tensorsTotal, detail, p.tensors === p.tensorsTotal);
    };
    let manifest;
    try {
      manifest = await convertModel({
        model: openFolder(model),
        decoder: openFolder(vq),
        sink,
        weights: values.weights as LmWeightFormat,
        ...(values['decoder-weights'] ? { decoderDType: values['decoder-weights'] as WeightDType } : {}),
        fuseDecoder: values['fuse-decoder'] === true,
        ort,
        onProgress,
        ...(io.signal ? { signal: io.signal } : {}),
      });
    } finally {
      bar?.end();
    }
    const { totalBytes } = manifest.layout;
    io.stdout.write(
      `wrote ${sink.outDir}: ${formatBytes(totalBytes)} in ${manifest.chunks.length} chunks, ` +
        `${manifest.tensors.length} tensors (LM ${manifest.weights.lm}, decoder ${manifest.weights.decoder}), ` +
        `in ${formatSeconds(performance.now() - started)}\n`,
    );
  },
};

export default command;
