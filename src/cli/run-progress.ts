// One progress line over a run of many images (`generate --prompts`, `--count`): images done of
// the whole run (those a previous run made included), images per minute and time left, both from
// the images this run made (the one under way counted by its share of tokens).
import { formatSeconds, type ProgressBar } from './progress.ts';
import type { GenerationProgress } from '../core/engine/types.ts';

export class RunProgress {
  private made = 0;
  /** Share of the image under way, 0..1. */
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

  image(p: GenerationProgress): void {
    this.current = p.phase === 'decode' ? p.done / p.total : p.phase === 'vq-decode' ? 1 : 0;
    this.draw(false);
  }

  imageDone(): void {
    this.made++;
    this.current = 0;
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
