// "A new version is ready — reload to update": shown when a new service worker is waiting.
// The new version takes over only on the user's click, and never under a running generation:
// a click during one waits for it to finish.
import './update-prompt.css';

export interface UpdatePromptOptions {
  isBusy(): boolean;
  /** Resolves when the engine is idle. */
  idle(): Promise<void>;
  /** Activates the waiting version and reloads the page. */
  apply(): void;
}

export function showUpdatePrompt(options: UpdatePromptOptions, parent: HTMLElement = document.body): HTMLElement {
  const existing = parent.querySelector<HTMLElement>('.update-prompt');
  if (existing) return existing;
  const box = document.createElement('div');
  box.className = 'update-prompt';
  box.setAttribute('role', 'alert');
  const text = document.createElement('span');
  text.textContent = 'A new version is ready — reload to update.';
  const reload = document.createElement('button');
  reload.type = 'button';
  reload.textContent = 'Reload';
  const later = document.createElement('button');
  later.type = 'button';
  later.className = 'update-later';
  later.textContent = 'Later';
  reload.addEventListener('click', () => {
    reload.disabled = true;
    if (options.isBusy()) text.textContent = 'The new version loads when the current image is done.';
    void options.idle().then(() => options.apply());
  });
  later.addEventListener('click', () => box.remove());
  box.append(text, reload, later);
  parent.append(box);
  return box;
}
