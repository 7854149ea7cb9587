// The Cosmos DV decoder: from decoder.jit to one ONNX graph (docs/model.md#decoder).
//   const reader = await openTorchScript(folder.open('decoder.jit'));
//   const spec = await describeDecoderFile(reader);                          // structure + FSQ check
//   const weights = convertDecoderWeights(reader, { spec, dtype: 'f16' });   // AsyncIterable<NamedTensor>
//   const model = buildDecoderGraph(spec, await collectWeights(weights), { activations: 'float16' });
export * from './decoder-spec.ts';
export * from './decoder-weights.ts';
export * from './decoder-graph.ts';

/** Collects converted weights into a map by name (what `buildDecoderGraph` takes). */
export async function collectWeights<T extends { name: string }>(weights: AsyncIterable<T>): Promise<Map<string, T>> {
  const out = new Map<string, T>();
  for await (const w of weights) out.set(w.name, w);
  return out;
}
