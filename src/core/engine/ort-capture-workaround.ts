// A workaround for ONNX Runtime Web's graph capture with pre-allocated GPU outputs (1.30.0, and
// 1.31.0-dev.20260914 alike). Each run registers every external GPUBuffer with ORT's wasm
// WebGPU table and drops the registration when the run ends. A captured session keeps the IO
// binding of its first run, so from the second run on ORT Web's JS looks up the output buffers of
// that binding, finds no registration, and throws ("Cannot set properties of undefined").
// Keeping the first run's registrations alive is enough: then every later run replays and gives
// onnxruntime-node's logits (tools/bench/graph-capture-probe.ts shows both behaviours).
//
// The registration is a private symbol property of the GPUBuffer, [handle, count]; ORT marks its
// own long-lived output buffers with a count of NaN, which its release never brings to zero. We
// do the same for our buffers while the first run is in flight (the property exists only then).
// It leans on ORT internals, so the caller checks the result and falls back to a session
// without capture when the hold did not take.

const REGISTRATION = 'gpuBufferMetadata';

/**
 * Starts holding ORT Web's registrations of `buffers` as they appear; call the returned function
 * once the run has finished: it stops watching and says whether every buffer was held.
 */
export function holdOrtBufferRegistrations(buffers: readonly GPUBuffer[]): () => boolean {
  const held = new Set<GPUBuffer>();
  const hold = () => {
    for (const buffer of buffers) {
      if (held.has(buffer)) continue;
      const record = buffer as unknown as Record<symbol, unknown>;
      for (const key of Object.getOwnPropertySymbols(buffer)) {
        const entry = record[key];
        if (key.description === REGISTRATION && Array.isArray(entry) && entry.length === 2) {
          entry[1] = Number.NaN;
          held.add(buffer);
        }
      }
    }
  };
  // The run awaits the GPU (shader compilation, the capture) between registering and releasing.
  const timer = setInterval(hold, 0);
  return () => {
    clearInterval(timer);
    hold();
    return held.size === new Set(buffers).size;
  };
}
