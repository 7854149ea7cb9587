// The Cosmos DV decoder: from decoder.jit to one ONNX graph (SPEC C).
//   const reader = await openTorchScript(folder.open('decoder.jit'));
//   const spec = await describeDecoderFile(reader);
//   const weights = convertDecoderWeights(reader, spec, { dtype: 'f16' });   // AsyncIterable<NamedTensor>
//   const model = buildDecoderGraph(spec, await collect(weights), { activations: 'float16' });
import type { TensorReader } from '../../formats/tensor.ts';
import type { TorchScriptReader } from '../../formats/torchscript/index.ts';
import { checkFsqLevels, describeCosmosDecoder, type CosmosDecoderSpec, type DescribeOptions } from './describe.ts';

export * from './describe.ts';
export * from './weights.ts';
export * from './graph.ts';

const LEVELS_BUFFER = 'inv_quant.quantizer._levels';

/** Describes the decoder from its tensor list and, where the archive has the FSQ `_levels` buffer, checks it. */
export async function describeDecoderFile(
  reader: TensorReader | TorchScriptReader,
  options: DescribeOptions = {},
  signal?: AbortSignal,
): Promise<CosmosDecoderSpec> {
  const torch = 'tensors' in reader ? reader : null;
  const spec = describeCosmosDecoder(torch ? torch.tensors() : reader.list(), { file: reader.file, ...options });
  if (torch?.has(LEVELS_BUFFER) && torch.info(LEVELS_BUFFER)?.dtype) {
    const t = await torch.readAny(LEVELS_BUFFER, signal);
    const view = new DataView(t.bytes.buffer, t.bytes.byteOffset, t.bytes.byteLength);
    const size = t.dtype === 'i64' ? 8 : t.dtype === 'i32' ? 4 : 0;
    if (size) {
      const levels = Array.from({ length: t.bytes.byteLength / size }, (_, i) =>
        size === 8 ? Number(view.getBigInt64(i * 8, true)) : view.getInt32(i * 4, true),
      );
      checkFsqLevels(spec, levels, reader.file);
    }
  }
  return spec;
}

/** Collects converted weights into a map by name (what `buildDecoderGraph` takes). */
export async function collectWeights<T extends { name: string }>(weights: AsyncIterable<T>): Promise<Map<string, T>> {
  const out = new Map<string, T>();
  for await (const w of weights) out.set(w.name, w);
  return out;
}
