// Without WebGPU the engine runs on the CPU (ONNX Runtime's wasm backend). How long an image
// takes there is measured, not guessed: a small probe generation (4 × 4 tokens) gives the time
// to read a prompt and the time per token on this device, and the estimate scales that up.
import type { EngineClient } from '../client/engine-client.ts';
import { formatDuration } from './format.ts';

export interface SpeedProbe {
  /** Time to read the prompt (both CFG branches). */
  prefillMs: number;
  /** Decode time per token over the probe. */
  msPerToken: number;
  /** Tokens the probe decoded. */
  tokens: number;
}

/** The probe: the smallest image that gives a stable per-token time (16 tokens). */
export const PROBE_SIZE = 64;

export async function measureSpeed(client: EngineClient, signal?: AbortSignal): Promise<SpeedProbe> {
  const r = await client.generate({ prompt: 'a photo of a cat', size: PROBE_SIZE, seed: 1 }, signal ? { signal } : {});
  return { prefillMs: r.timings.prefillMs, msPerToken: r.timings.decodeMs / Math.max(1, r.stats.steps), tokens: r.stats.steps };
}

/**
 * Lower bound for an image of `size` px: prompt + tokens × the probe's time per token. Later
 * tokens attend over a longer context and cost more, so the real time is longer; the text says so.
 */
export function estimateMs(probe: SpeedProbe, size: number): number {
  const tokens = (size / 16) ** 2;
  return probe.prefillMs + tokens * probe.msPerToken;
}

export function estimateText(probe: SpeedProbe, sizes: readonly number[] = [256, 512, 1024]): string {
  const measured = `Measured on this device: ${formatDuration(probe.prefillMs)} to read a prompt and ${probe.msPerToken.toFixed(0)} ms per token (a ${probe.tokens}-token test image).`;
  const estimates = sizes.map((s) => `${s} px (${(s / 16) ** 2} tokens): at least ${formatDuration(estimateMs(probe, s))}`).join('; ');
  return `${measured} Estimated times — ${estimates}. Later tokens see a longer context and take longer, so expect more.`;
}
