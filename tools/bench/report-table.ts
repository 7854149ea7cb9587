// The readable table `npm run bench` prints before its JSON report: sections a, c, b in that
// order, each as it ran or why it failed.
import type { benchBrowser } from './browser-webgpu.ts';
import type { benchCpu } from './cpu-step.ts';
import type { benchSjdTiny } from './sjd-engine.ts';
import type { benchImagesPerMinute } from './images-per-minute.ts';

export function table(report: Record<string, unknown>): string {
  const lines: string[] = [];
  const cpu = report.cpu as Awaited<ReturnType<typeof benchCpu>> | { error: string } | undefined;
  if (cpu && 'error' in cpu) lines.push(`a. Node CPU: FAILED: ${cpu.error}`);
  else if (cpu) {
    const t = cpu.torch as { msPerStep?: number; status?: string };
    const mb = (b: number) => `${(b / 1e6).toFixed(1)} MB`;
    const ours = cpu.variants.find((v) => v.engine)!;
    lines.push(
      `a. Node CPU decode step, batch 2 (CFG), ${cpu.model}`,
      `   context cond/uncond            ${cpu.context.cond}/${cpu.context.uncond} tokens; ${cpu.session.intraOpThreads} intra-op threads`,
      `   KV cache, as the engine's      ${cpu.kvCache.slotsPerRow} slots per row, ${cpu.kvCache.mode}, ${cpu.kvCache.activations} (${mb(cpu.kvCache.bytes)}): ` +
        `grown in chunks of ${cpu.kvCache.growBy}, at most ${cpu.kvCache.maxSlotsPerRow}`,
      ...cpu.variants.map(
        (v) =>
          `   ${`${v.kvCache} cache, level ${v.accuracyLevel}, ${v.activations}`.padEnd(31)}${v.msPerStep.toFixed(1)} ms/step   (${v.steps.join(', ')})` +
          `${v.vsLevel0 ? `   logits vs the first: max |Δ| ${v.vsLevel0.maxAbs}, argmax ${v.vsLevel0.argmaxAgree ? 'same' : 'DIFFERS'}` : ''}${v.engine ? '   ← the engine\'s' : ''}`,
      ),
      ...(cpu.kvCache.staticMax
        ? [
            `   ${`static ${cpu.kvCache.maxSlotsPerRow}-slot cache`.padEnd(31)}${cpu.kvCache.staticMax.msPerStep.toFixed(1)} ms/step vs ${cpu.kvCache.staticMax.grownMsPerStepAlongside.toFixed(1)} grown, alongside ` +
              `(the engine's configuration): ×${cpu.kvCache.staticMax.staticOverGrown} (median of pairs)`,
          ]
        : []),
      `   ${`one growth (+${cpu.kvCache.growBy} slots)`.padEnd(31)}${cpu.kvCache.growthMs.toFixed(1)} ms, once per ${cpu.kvCache.growBy} steps: ${cpu.kvCache.growthMsPerStep} ms/step`,
      ...ours.sjdWindows.map(
        (w) =>
          `   SJD window ${String(w.window).padEnd(2)} verification    ${w.msPerIteration.toFixed(1)} ms (${ours.kvCache === 'read-only' ? 'one batch-2 run' : 'two batch-1 runs'} of ${w.window + 1} tokens) vs ` +
          `${w.msPerStepAlongside.toFixed(1)} ms/step alongside: pays off above ${w.breakEvenTokensPerRun} accepted tokens per run`,
      ),
      `   bytes read per step            ${mb(cpu.bytesPerStep.total)} (layers ${mb(cpu.bytesPerStep.layers)}, head ${mb(cpu.bytesPerStep.visualHeadAndNorm)}, KV ${mb(cpu.bytesPerStep.kvCache)}); ` +
        `q4 scales counted as stored (f16): the f32 session holds them in f32, ${mb(cpu.bytesPerStep.f32ScalesExtra)} more`,
      `   copy bandwidth                 ${cpu.copyBandwidthGBps} GB/s`,
      `   bandwidth bound                ${cpu.boundMsPerStep.toFixed(1)} ms/step`,
      `   PyTorch f32 step               ${t.msPerStep !== undefined ? `${t.msPerStep.toFixed(1)} ms/step` : 'unavailable'}`,
      ...(cpu.breakdown
        ? [
            `   where the engine's step goes   ${cpu.breakdown.wallMsPerStep.toFixed(1)} ms wall (profiled) = ${cpu.breakdown.modelRunMsPerStep.toFixed(1)} ms ORT model_run ` +
              `+ ${cpu.breakdown.outsideOrtMsPerStep.toFixed(1)} ms outside ORT (the binding, the new entries' writes)`,
            `   kernels                        ${cpu.breakdown.kernelMsPerStep.toFixed(1)} ms: ${cpu.breakdown.byOp.map((o) => `${o.op} ${o.msPerStep} (${o.nodes})`).join(', ')}`,
            `   model_run / bound              ${cpu.modelRunOverBound}`,
          ]
        : []),
      `   ORT's kernels alone            MatMulNBits ×${cpu.kernelFloors.matMulNBits.nodes}: ${cpu.kernelFloors.matMulNBits.msPerStep.toFixed(1)} ms (${cpu.kernelFloors.matMulNBits.gbPerS} GB/s of ${mb(cpu.kernelFloors.matMulNBits.bytes)}); ` +
        `attention GEMMs ×${cpu.kernelFloors.attentionGemms.nodes}: ${cpu.kernelFloors.attentionGemms.msPerStep.toFixed(1)} ms (${cpu.kernelFloors.attentionGemms.gbPerS} GB/s of ${mb(cpu.kernelFloors.attentionGemms.bytes)})`,
      `   kernels alone / bound          ${cpu.kernelFloors.overBound}   (${cpu.kernelFloors.msPerStep.toFixed(1)} ms; the rest of the engine's step: ${cpu.kernelFloors.restOfStepMs.toFixed(1)} ms of softmax, masks, small ops, binding)`,
      `   ours (the engine's) / bound    ${cpu.ratios.oursOverBound}   (target ≤ 2; ${cpu.ratios.oursOverBoundWithF32Scales} with the f32 scales' bytes counted)`,
      `   torch / ours (the engine's)    ${cpu.ratios.torchOverOurs ?? 'n/a'}   (target ≥ 3)`,
    );
  }
  const sjd = report.sjd as Awaited<ReturnType<typeof benchSjdTiny>> | { error: string } | undefined;
  if (sjd && 'error' in sjd) lines.push(`c. SJD on the CPU engine: FAILED: ${sjd.error}`);
  else if (sjd) {
    lines.push(
      `c. SJD on the CPU engine, ${sjd.model}, ${sjd.size}², seed ${sjd.seed}`,
      ...sjd.rows.map(
        (r) =>
          `   T=${r.temperature} ${(r.window ? `SJD window ${r.window}` : 'plain').padEnd(27)}${r.acceptedPerRun.toFixed(2)} tokens/run, ` +
          `${r.runs} runs, ${r.msPerToken.toFixed(2)} ms/token`,
      ),
    );
  }
  const images = report.images as Awaited<ReturnType<typeof benchImagesPerMinute>> | { error: string } | undefined;
  if (images && 'error' in images) lines.push(`d. Images per minute: FAILED: ${images.error}`);
  else if (images) {
    lines.push(
      `d. Images per minute, N images per request in one pass (CPU engine), ${images.model}, ${images.size}²`,
      ...images.rows.map(
        (r) =>
          `   N=${r.count}                            ${r.imagesPerMinute.toFixed(2)} images/min (${r.seconds} s; ${r.msPerStep} ms/step, ` +
          `${r.tokensPerSecond} tokens/s, decoder ${r.vqSecondsPerImage} s/image, ${r.imagesPerPass} per pass)`,
      ),
      `   N=4 / N=1                      ${images.n4OverN1}   (target ≥ 2)`,
    );
  }
  const b = report.browser as Awaited<ReturnType<typeof benchBrowser>> | { error: string } | undefined;
  if (b && 'error' in b) lines.push(`b. Chromium WebGPU: FAILED: ${b.error}`);
  else if (b) {
    lines.push(
      `b. Chromium WebGPU (${b.mode}${b.adapter ? `, ${[b.adapter.vendor, b.adapter.architecture, b.adapter.description].filter(Boolean).join(' ')}` : ''}), ${b.size}², ${b.model}`,
      `   seconds                        prefill ${b.seconds.prefill}, decode ${b.seconds.decode}, VQ decode ${b.seconds.vqDecode}, total ${b.seconds.total}`,
      `   per step                       ${b.msPerStep} ms`,
      `   stats                          ${JSON.stringify(b.stats)}`,
      ...b.batches.map(
        (row) =>
          `   N=${row.count}                            ${row.imagesPerMinute.toFixed(2)} images/min (${row.seconds} s in the page, ${row.msPerStep} ms/step; ` +
          `dispatches/step ${String(row.stats.dispatchesPerStep ?? 'n/a')}, runs ${String(row.stats.runs)}, readbacks ${String(row.stats.readbacks)}, ` +
          `graph capture ${String(row.stats.graphCapture)})`,
      ),
    );
  }
  return `${lines.join('\n')}\n`;
}
