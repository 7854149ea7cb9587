// One progress line over a run of many images (`generate --prompts`, `--count`): images done of
// the whole run (those a previous run made included), images per minute and time left, both from
// the images this run made (those under way counted by their share of the work: a batch's images
// advance together, so a batch of 4 halfway through its tokens counts as nearly 2). An image
// counts as done when it is written.
import { formatSeconds, type ProgressBar } from './progress.ts';
import type { GenerationProgress } from '../core/engine/types.ts';

/**
 * The share of an image's time its pixels take (the VQ decoder, image after image), the rest being
 * its tokens: 4% for one 1024² image on the CPU (6.6 s of 2 min 48 s, README), more in a batch,
 * whose tokens share the steps while its pixels do not.
 */
export const PIXELS_SHARE = 1 / 16;

export class RunProgress {
  private made = 0;
  /** The images under way (the engine call's count) and their share of the work, 0..inFlight. */
  private inFlight = 0;
  private current = 0;
  private startMs: number | undefined;

  constructor(
    private readonly bar: ProgressBar | undefined,
    private readonly total: number,
    private readonly alreadyDone: number,
    private readonly now: () => number = () => performance.now(),
  ) {}

  /** The clock starts with the first image (not with the model's load). */
  start(): void {
    this.startMs ??= this.now();
    this.draw(true);
  }

  /**
   * Progress of a call of `p.count` images (1 when absent): their tokens all at the same step,
   * then their pixels one by one (vq-decode's `done`: images decoded).
   */
  image(p: GenerationProgress): void {
    this.inFlight = p.count ?? 1;
    const tokens = this.inFlight * (1 - PIXELS_SHARE);
    this.current = p.phase === 'decode' ? (tokens * p.done) / p.total : p.phase === 'vq-decode' ? tokens + p.done * PIXELS_SHARE : 0;
    this.draw(false);
  }

  /** An image written: a call's images come back together, so the rest of them are made too. */
  imageDone(): void {
    this.made++;
    this.inFlight = Math.max(0, this.inFlight - 1);
    this.current = this.inFlight;
    this.draw(true);
  }

  get done(): number {
    return this.alreadyDone + this.made;
  }

  /** "12/40 images  3.1 images/min  ETA 9 min 2 s" (rate and ETA once there is a rate). */
  detail(): string {
    const parts = [`${this.done}/${this.total} images`];
    const minutes = this.startMs === undefined ? 0 : (this.now() - this.startMs) / 60_000;
    const progress = this.made + this.current;
    if (minutes > 0 && progress > 0) {
      const perMinute = progress / minutes;
      parts.push(`${perMinute.toFixed(perMinute < 10 ? 2 : 1)} images/min`);
      const left = this.total - this.done - this.current;
      if (left > 0) parts.push(`ETA ${formatSeconds((left / perMinute) * 60_000)}`);
    }
    return parts.join('  ');
  }

  private draw(force: boolean): void {
    this.bar?.update('images', this.total > 0 ? (this.done + this.current) / this.total : 1, this.detail(), force);
  }
}
