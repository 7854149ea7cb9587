// "Model": which model, what it costs before anything is downloaded (planModel: download size,
// storage needed, free space), asking for persistent storage, then download → convert → load
// with progress and a Cancel. A model already stored in this browser loads at once, with no
// download. Offers the 1.5B models only where the device can hold them, and says why not.
import type { CachedModel, EngineClient, LoadModelOptions, ModelPlan, ModelSource, PreparedModelInfo } from '../client/engine-client.ts';
import type { DeviceFacts } from '../core/runtime/device.ts';
import { normalizeSource } from '../client/model-source.ts';
import { h, messageOf } from './dom.ts';
import { formatBytes } from './format.ts';
import { CATALOG, DEFAULT_MODEL_ID, optionsFromUrl, sourceFromUrl, sourceOf, suitability } from './model-catalog.ts';
import { describePrepare } from './progress-text.ts';
import { ProgressView } from './progress-view.ts';

export interface ModelChoice {
  key: string;
  label: string;
  source: ModelSource;
  /** Why this device cannot use it (undefined: it can). */
  unavailable?: string;
}

export interface ModelLoaderHandlers {
  onReady(info: PreparedModelInfo): void;
  /** The loaded model is gone (another one is loading, or it was deleted). */
  onUnloaded(): void;
  onStatus(text: string, tone: 'info' | 'busy' | 'ok' | 'warning' | 'error'): void;
  /** The store changed (a model was added or completed). */
  onStored(): void;
}

const sameSource = (a: ModelSource, b: ModelSource) => JSON.stringify(normalizeSource(a)) === JSON.stringify(normalizeSource(b));

/** The choices: a source named in the page's URL first, then the catalog. */
export function modelChoices(params: URLSearchParams, base: string, device: DeviceFacts, deviceMemoryGB?: number): { choices: ModelChoice[]; urlError?: string } {
  const fromUrl = sourceFromUrl(params, base);
  const choices: ModelChoice[] = [];
  if (fromUrl && 'source' in fromUrl) choices.push({ key: 'url', label: fromUrl.label, source: fromUrl.source });
  const weights = optionsFromUrl(params).weights ?? 'q4';
  for (const entry of CATALOG) {
    const fit = suitability(entry, device, deviceMemoryGB, weights);
    choices.push({ key: entry.id, label: entry.label, source: sourceOf(entry), ...(fit.ok ? {} : { unavailable: fit.reason }) });
  }
  return fromUrl && 'error' in fromUrl ? { choices, urlError: fromUrl.error } : { choices };
}

export class ModelLoader {
  readonly element: HTMLElement;
  readonly #select: HTMLSelectElement;
  readonly #plan: HTMLElement;
  readonly #action: HTMLButtonElement;
  readonly #cancel: HTMLButtonElement;
  readonly #progress = new ProgressView('Model download and preparation');
  readonly #loaded: HTMLElement;
  readonly #choices: ModelChoice[];
  readonly #options: LoadModelOptions;
  #planned: ModelPlan | undefined;
  #running: AbortController | undefined;
  #info: PreparedModelInfo | undefined;

  constructor(
    private readonly client: EngineClient,
    device: DeviceFacts,
    private readonly handlers: ModelLoaderHandlers,
    location: { search: string; href: string } = window.location,
  ) {
    const params = new URLSearchParams(location.search);
    const memory = (navigator as { deviceMemory?: number }).deviceMemory;
    const { choices, urlError } = modelChoices(params, location.href, device, memory);
    this.#choices = choices;
    this.#options = optionsFromUrl(params);
    const firstUsable = choices.find((c) => c.key === 'url') ?? choices.find((c) => c.key === DEFAULT_MODEL_ID)!;
    this.#select = h('select', { id: 'model-select', 'aria-describedby': 'model-plan' },
      ...choices.map((c) => {
        const option = h('option', { value: c.key, disabled: c.unavailable !== undefined, selected: c === firstUsable }, c.unavailable ? `${c.label} — not on this device: ${c.unavailable}` : c.label);
        return option;
      }));
    this.#select.addEventListener('change', () => void this.#onChoice());
    this.#plan = h('p', { id: 'model-plan', class: 'model-plan' }, urlError ?? '');
    this.#action = h('button', { type: 'button', class: 'model-action', onclick: () => void this.#onAction() }, 'Check download size');
    this.#cancel = h('button', { type: 'button', class: 'model-cancel secondary', hidden: true, onclick: () => this.cancel() }, 'Cancel');
    this.#loaded = h('p', { class: 'model-loaded', hidden: true });
    this.element = h('section', { id: 'model', class: 'panel', 'aria-labelledby': 'model-title' },
      h('h2', { id: 'model-title' }, 'Model'),
      h('div', { class: 'field' }, h('label', { for: 'model-select' }, 'Choose a model'), this.#select),
      this.#plan,
      h('div', { class: 'actions' }, this.#action, this.#cancel),
      this.#progress.element,
      this.#loaded);
  }

  get busy(): boolean {
    return this.#running !== undefined;
  }

  get info(): PreparedModelInfo | undefined {
    return this.#info;
  }

  /** On page load: a model already stored in this browser loads at once (no network). */
  async start(): Promise<void> {
    let stored: CachedModel | undefined;
    try {
      stored = this.#storedFor(this.#choice().source, await this.client.listCachedModels());
    } catch (e) {
      this.#plan.textContent = `Could not read this browser’s model storage: ${messageOf(e)}`;
    }
    if (stored?.complete) await this.#prepare();
    else this.#describeUnplanned(stored);
  }

  cancel(): void {
    this.#running?.abort();
  }

  /** Loads the chosen model again from storage (after the GPU was lost): no download. */
  reload(): Promise<void> {
    return this.#prepare();
  }

  /** A stored model was deleted: if it was the loaded one, say so and offer it again. */
  forget(modelId: string): void {
    this.#planned = undefined;
    if (this.#info?.modelId === modelId) {
      this.#info = undefined;
      this.#loaded.hidden = true;
      this.handlers.onUnloaded();
    }
    this.#describeUnplanned(undefined);
  }

  #choice(): ModelChoice {
    return this.#choices.find((c) => c.key === this.#select.value)!;
  }

  #storedFor(source: ModelSource, models: CachedModel[]): CachedModel | undefined {
    const weights = this.#options.weights ?? 'q4';
    return models.find((m) => sameSource(m.source, source) && m.weights === weights);
  }

  #describeUnplanned(stored: CachedModel | undefined): void {
    this.#planned = undefined;
    this.#action.textContent = 'Check download size';
    this.#action.hidden = false;
    this.#plan.textContent = stored
      ? `An interrupted download of ${formatBytes(stored.bytes)} is stored: it resumes where it stopped.`
      : 'Nothing is downloaded until you confirm: first see the size and the storage it needs.';
  }

  async #onChoice(): Promise<void> {
    this.#describeUnplanned(undefined);
    try {
      const stored = this.#storedFor(this.#choice().source, await this.client.listCachedModels());
      if (stored?.complete) await this.#prepare();
      else this.#describeUnplanned(stored);
    } catch (e) {
      this.#plan.textContent = `Could not read this browser’s model storage: ${messageOf(e)}`;
    }
  }

  async #onAction(): Promise<void> {
    if (this.#planned) {
      // From the click itself: browsers grant persistence only to a page the person is using.
      if (navigator.storage?.persist && !(await navigator.storage.persisted())) await navigator.storage.persist().catch(() => false);
      await this.#prepare();
      return;
    }
    this.#action.disabled = true;
    this.#plan.textContent = 'Asking the server for the file sizes…';
    try {
      const plan = await this.client.planModel(this.#choice().source, this.#options);
      if (plan.cached) {
        await this.#prepare();
        return;
      }
      this.#plan.textContent = await planText(plan);
      this.#plan.dataset.downloadBytes = String(plan.downloadBytes);
      if (plan.backend) this.#plan.dataset.backend = plan.backend.backend;
      if (plan.refusal) {
        // This device cannot run it as asked: nothing to download.
        this.#plan.dataset.refused = plan.refusal.code;
        return;
      }
      delete this.#plan.dataset.refused;
      this.#planned = plan;
      this.#action.textContent = `Download ${formatBytes(plan.downloadBytes)} and prepare`;
    } catch (e) {
      this.#plan.textContent = `Could not check the model: ${messageOf(e)}`;
    } finally {
      this.#action.disabled = false;
    }
  }

  async #prepare(): Promise<void> {
    if (this.#running) return;
    const choice = this.#choice();
    const running = new AbortController();
    this.#running = running;
    if (this.#info) {
      this.#info = undefined;
      this.handlers.onUnloaded();
    }
    this.#loaded.hidden = true;
    this.#action.hidden = true;
    this.#cancel.hidden = false;
    this.#select.disabled = true;
    this.handlers.onStatus(`Preparing ${choice.label}…`, 'busy');
    try {
      const info = await this.client.prepareModel(choice.source, {
        ...this.#options,
        signal: running.signal,
        onProgress: (p) => this.#progress.show(describePrepare(p)),
      });
      this.#info = info;
      // The store changed: the storage panel asks the worker for its list before onReady starts
      // anything long there (the CPU speed test), or the list waits behind that.
      this.handlers.onStored();
      this.#plan.textContent = '';
      this.#loaded.textContent = `${choice.label} is ready${info.fromCache ? ', loaded from this browser’s storage' : ''}: ${backendText(info)}.`;
      this.#loaded.hidden = false;
      this.handlers.onReady(info);
    } catch (e) {
      const cancelled = running.signal.aborted;
      this.#plan.textContent = cancelled ? 'Stopped. What was downloaded is kept: the download resumes from there.' : `The model could not be prepared: ${messageOf(e)}`;
      this.handlers.onStatus(cancelled ? 'Model download stopped.' : 'The model could not be prepared.', cancelled ? 'info' : 'error');
      this.#planned = undefined;
      this.#action.textContent = 'Check download size';
      this.#action.hidden = false;
      this.handlers.onStored(); // a download stopped or failed part-way is in the store too
    } finally {
      this.#running = undefined;
      this.#progress.hide();
      this.#cancel.hidden = true;
      this.#select.disabled = false;
    }
  }
}

export function backendText(info: Pick<PreparedModelInfo, 'backend' | 'activations'>): string {
  return info.backend === 'webgpu' ? `runs on your GPU (WebGPU, ${info.activations} activations)` : 'runs on the CPU (no WebGPU: much slower)';
}

async function planText(plan: ModelPlan): Promise<string> {
  let storage = plan.storage;
  if (!storage && navigator.storage?.estimate) {
    const e = await navigator.storage.estimate();
    storage = { usage: e.usage ?? 0, quota: e.quota ?? 0 };
  }
  const resumed = plan.storedBytes > 0 ? ` (${formatBytes(plan.storedBytes)} already stored from an earlier visit)` : '';
  const parts = [
    `Download: ${formatBytes(plan.downloadBytes)}${resumed}.`,
    `Storage: ${formatBytes(plan.peakStorageBytes)} while converting, ${formatBytes(plan.finalStorageBytes)} kept.`,
  ];
  if (storage) {
    const free = Math.max(0, storage.quota - storage.usage);
    parts.push(`This browser offers this site ${formatBytes(free)} more.`);
    if (free < plan.peakStorageBytes) parts.push('That is not enough: delete stored models below, or free space on the device.');
  }
  // What this device will run it on (or why it cannot), decided before the download.
  if (plan.refusal) parts.push(`This device cannot run it as chosen: ${plan.refusal.message}`);
  else if (plan.backend) parts.push(plan.backend.summary, ...plan.backend.warnings);
  return parts.join(' ');
}
