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

/**
 * The one progress line of a request for several images. The engine runs them together (one
 * pass: every image at the same row) or, with SJD (whose images cannot step together), one
 * after another; the events say which: a pass for several images reports every
 * image's first decode event before any token is drawn, while one image at a time means image 0
 * draws tokens before image 1 is heard of. Feed every event, in order, to `update`.
 */
export class ImagesProgress {
  #mode: 'unknown' | 'together' | 'one-by-one' = 'unknown';
  /** Image 0's first decode `done` (the kept codes): a later, larger one means tokens are being drawn. */
  #firstDone: number | undefined;

  constructor(readonly count: number) {}

  /** Whether the images are drawn in one pass; undefined until the events have said. */
  get together(): boolean | undefined {
    return this.#mode === 'unknown' ? undefined : this.#mode === 'together';
  }

  update(p: GenerationProgress): ProgressReport {
    const image = p.image ?? 0;
    const n = this.count;
    if (this.#mode === 'unknown') {
      if ((p.phase === 'prefill' && image > 0) || p.phase === 'vq-decode') this.#mode = 'one-by-one';
      else if (p.phase === 'decode' && image > 0) this.#mode = 'together';
      else if (p.phase === 'decode') {
        if (this.#firstDone === undefined) this.#firstDone = p.done;
        else if (p.done > this.#firstDone) this.#mode = 'one-by-one';
      }
    }
    const base = describeGeneration(p);
    if (this.#mode !== 'one-by-one') {
      // Together: one row for all of them, and the rate counts every image's tokens.
      if (p.phase === 'decode') {
        const side = Math.max(1, p.gridSide);
        const row = Math.min(side, Math.floor(p.done / side));
        const rate = p.tokensPerSecond && p.tokensPerSecond > 0 ? ` · ${p.tokensPerSecond.toFixed(p.tokensPerSecond < 10 ? 1 : 0)} tokens/s` : '';
        return { title: `Drawing row ${row} of ${side} · ${n} images`, detail: `${p.done} of ${p.total} tokens per image${rate}${eta(p.etaMs)}`, fraction: ratio(p.done, p.total) };
      }
      if (p.phase === 'vq-decode') return { ...base, title: `${base.title} · image ${image + 1} of ${n}` };
      return { ...base, title: `${base.title} · ${n} images` };
    }
    // One after another: this image's phase, and the fraction of the whole request.
    const title = `Image ${image + 1} of ${n} · ${base.title.charAt(0).toLowerCase()}${base.title.slice(1)}`;
    if (p.phase === 'decode') {
      // The engine's ETA is this image's; the images still to come take about as long each.
      const perImageMs = p.tokensPerSecond && p.tokensPerSecond > 0 ? (p.total / p.tokensPerSecond) * 1000 : undefined;
      const left = p.etaMs == null || perImageMs === undefined ? undefined : p.etaMs + (n - 1 - image) * perImageMs;
      const rate = p.tokensPerSecond && p.tokensPerSecond > 0 ? ` · ${p.tokensPerSecond.toFixed(p.tokensPerSecond < 10 ? 1 : 0)} tokens/s` : '';
      return { title, detail: `${p.done} of ${p.total} tokens${rate}${eta(left)}`, fraction: ratio(image * p.total + p.done, n * p.total) };
    }
    return { ...base, title, fraction: p.phase === 'vq-decode' ? ratio(image + 1, n) : base.fraction };
  }
}
