// What the progress view says for each phase of preparing a model and of generating an image.
// Pure: the numbers come from the worker's progress events; nothing here is guessed.
import type { GenerationProgress, PrepareProgress } from '../client/protocol.ts';
import { formatBytes, formatDuration, formatPercent, formatRate } from './format.ts';

export interface ProgressReport {
  /** Short headline: the phase. */
  title: string;
  /** The measured facts of the phase (bytes, speed, ETA, rows…). */
  detail: string;
  /** 0..1, or null when the phase has no measurable fraction yet. */
  fraction: number | null;
}

const ratio = (done: number, total: number): number | null => (total > 0 ? Math.min(1, done / total) : null);
const eta = (ms: number | null | undefined): string => (ms == null || !Number.isFinite(ms) ? '' : ` · about ${formatDuration(ms)} left`);

export function describePrepare(p: PrepareProgress): ProgressReport {
  switch (p.phase) {
    case 'download': {
      const fraction = ratio(p.bytes, p.totalBytes);
      const speed = p.bytesPerSecond > 0 ? ` · ${formatRate(p.bytesPerSecond)}` : '';
      return {
        title: `Downloading ${p.file}`,
        detail: `${formatBytes(p.bytes)} of ${formatBytes(p.totalBytes)}${fraction === null ? '' : ` (${formatPercent(fraction)})`}${speed}${eta(p.etaMs)}`,
        fraction,
      };
    }
    case 'convert':
      return { title: 'Converting the model for your device', detail: p.total > 0 ? `${p.step} (${p.done} of ${p.total})` : p.step, fraction: ratio(p.done, p.total) };
    case 'verify':
      return { title: 'Checking the stored model', detail: `${p.done} of ${p.total} files`, fraction: ratio(p.done, p.total) };
    case 'load':
      return { title: 'Loading the model', detail: `${p.done} of ${p.total}`, fraction: ratio(p.done, p.total) };
  }
}

export function describeGeneration(p: GenerationProgress): ProgressReport {
  switch (p.phase) {
    case 'prefill': {
      // A prompt that takes several runs (a slow GPU feeds it in pieces) reports each one.
      const fraction = p.total > 1 ? ratio(p.done, p.total) : null;
      const runs = fraction === null ? '' : `${p.done} of ${p.total} prompt runs · `;
      return { title: 'Reading the prompt', detail: `${runs}${formatDuration(p.elapsedMs)} so far`, fraction };
    }
    case 'decode': {
      const side = Math.max(1, p.gridSide);
      const row = Math.min(side, Math.floor(p.done / side));
      const rate = p.tokensPerSecond && p.tokensPerSecond > 0 ? ` · ${p.tokensPerSecond.toFixed(p.tokensPerSecond < 10 ? 1 : 0)} tokens/s` : '';
      return {
        title: `Drawing row ${row} of ${side}`,
        detail: `${p.done} of ${p.total} tokens${rate}${eta(p.etaMs)}`,
        fraction: ratio(p.done, p.total),
      };
    }
    case 'vq-decode':
      return { title: 'Turning tokens into pixels', detail: `${formatDuration(p.elapsedMs)} so far`, fraction: null };
  }
}
