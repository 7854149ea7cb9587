// The page's one-line status ("Checking your device…", "Ready", errors). A polite live
// region: screen readers announce changes without interrupting.

export type StatusTone = 'info' | 'busy' | 'ok' | 'warning' | 'error';

export class StatusLine {
  constructor(private readonly element: HTMLElement) {}

  show(text: string, tone: StatusTone = 'info'): void {
    this.element.textContent = text;
    this.element.dataset.tone = tone;
  }
}
