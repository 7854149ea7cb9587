// The prompt and its settings. Reads the fields into checked settings (resolveSettings: the same
// checks the engine runs), shows each InvalidSettings error next to its field, and fills the
// fields back from an image's settings for a re-run (the Images count stays: it is how many
// images a Generate makes, checked by resolveCount, not a setting of one image). Enter in the prompt generates (Shift+Enter
// for a new line).
import { SimpleARError } from '../core/base/errors.ts';
import { DEFAULT_SETTINGS, MAX_IMAGES_PER_REQUEST, resolveSettings, type GenerationSettings } from '../core/engine/settings.ts';
import { countFromField } from './count-field.ts';
import { h } from './dom.ts';
import { negativeFieldText, negativePromptFromField } from './negative-field.ts';

export type SettingsField = 'prompt' | 'negativePrompt' | 'size' | 'cfg' | 'repetitionPenalty' | 'temperature' | 'topK' | 'topP' | 'seed' | 'sjd' | 'count';

export interface GenerateFormHandlers {
  /** `count` images (image i with seed settings.seed + i). */
  onGenerate(settings: GenerationSettings, count: number): void;
  onCancel(): void;
}

/** The SJD window used when SJD is switched on (draft tokens checked per model run). */
export const SJD_WINDOW = 16;
/** Largest image side the page offers (the engine is sized for 64 × 64 tokens). */
export const MAX_SIZE = 1024;

function randomSeed(): number {
  return crypto.getRandomValues(new Uint32Array(1))[0]!;
}

export class GenerateForm {
  readonly element: HTMLFormElement;
  readonly prompt: HTMLTextAreaElement;
  readonly #fields: Record<Exclude<SettingsField, 'prompt'>, HTMLInputElement | HTMLTextAreaElement>;
  readonly #errors = new Map<SettingsField, HTMLElement>();
  readonly #generate: HTMLButtonElement;
  readonly #cancel: HTMLButtonElement;
  readonly #advanced: HTMLDetailsElement;
  #ready = false;
  #busy = false;

  constructor(handlers: GenerateFormHandlers) {
    this.prompt = h('textarea', { id: 'prompt', name: 'prompt', rows: 3, required: true, placeholder: 'a red fox in the snow, golden hour', 'aria-describedby': 'prompt-hint prompt-error' });
    this.prompt.addEventListener('keydown', (e) => {
      if (e.key === 'Enter' && !e.shiftKey && !e.isComposing) {
        e.preventDefault();
        this.element.requestSubmit();
      }
    });
    const number = (name: SettingsField, attrs: Record<string, string | number>) =>
      h('input', { id: `setting-${name}`, name, type: 'number', inputmode: 'decimal', 'aria-describedby': `${name}-error`, ...attrs });
    this.#fields = {
      negativePrompt: h('textarea', { id: 'setting-negativePrompt', name: 'negativePrompt', rows: 2, 'aria-describedby': 'negativePrompt-hint negativePrompt-error' }),
      size: number('size', { min: 16, max: MAX_SIZE, step: 16, value: DEFAULT_SETTINGS.size }),
      cfg: number('cfg', { min: 0, max: 50, step: 0.5, value: DEFAULT_SETTINGS.cfg }),
      repetitionPenalty: number('repetitionPenalty', { min: 0.05, max: 10, step: 0.05, placeholder: 'the model’s' }),
      temperature: number('temperature', { min: 0, max: 10, step: 0.05, value: DEFAULT_SETTINGS.temperature }),
      topK: number('topK', { min: 1, max: DEFAULT_SETTINGS.topK, step: 1, value: DEFAULT_SETTINGS.topK }),
      topP: number('topP', { min: 0.01, max: 1, step: 0.01, value: DEFAULT_SETTINGS.topP }),
      seed: h('input', { id: 'setting-seed', name: 'seed', type: 'text', inputmode: 'numeric', autocomplete: 'off', placeholder: 'random', 'aria-describedby': 'seed-hint seed-error' }),
      sjd: h('input', { id: 'setting-sjd', name: 'sjd', type: 'checkbox', 'aria-describedby': 'sjd-hint sjd-error' }),
      count: number('count', { min: 1, max: MAX_IMAGES_PER_REQUEST, step: 1, value: 1, inputmode: 'numeric', 'aria-describedby': 'count-hint count-error' }),
    };
    this.#fields.negativePrompt.value = negativeFieldText(undefined);
    const error = (name: SettingsField) => {
      const el = h('p', { id: `${name}-error`, class: 'field-error', hidden: true });
      this.#errors.set(name, el);
      return el;
    };
    const row = (name: Exclude<SettingsField, 'prompt'>, label: string, hint?: string) =>
      h('div', { class: `field field-${name}` },
        h('label', { for: `setting-${name}` }, label),
        this.#fields[name],
        hint ? h('p', { id: `${name}-hint`, class: 'hint' }, hint) : null,
        error(name));

    this.#generate = h('button', { type: 'submit', class: 'generate', disabled: true }, 'Generate');
    this.#cancel = h('button', { type: 'button', class: 'cancel secondary', disabled: true, onclick: () => handlers.onCancel() }, 'Cancel');
    this.#advanced = h('details', { class: 'advanced' },
      h('summary', {}, 'Advanced settings'),
      h('div', { class: 'advanced-grid' },
        row('negativePrompt', 'Negative prompt', 'SimpleAR’s own to start with; empty = the null condition (plain CFG)'),
        row('size', 'Size (px, square)', 'multiple of 16; 1024 is the model’s native size'),
        row('cfg', 'Guidance (CFG)', '6 is the reference'),
        row('repetitionPenalty', 'Repetition penalty', 'empty = the model’s own (its generation_config.json; usually 1 = off)'),
        row('temperature', 'Temperature', '0 = greedy'),
        row('topK', 'Top-k', `${DEFAULT_SETTINGS.topK} = off`),
        row('topP', 'Top-p', '1 = off'),
        row('seed', 'Seed', 'empty = a new random seed each time; the seed used is shown with every image'),
        h('div', { class: 'field field-sjd field-check' },
          this.#fields.sjd,
          h('label', { for: 'setting-sjd' }, 'Speculative Jacobi decoding'),
          h('p', { id: 'sjd-hint', class: 'hint' }, `checks ${SJD_WINDOW} draft tokens per model run`),
          error('sjd'))));

    this.element = h('form', { class: 'generate-form', novalidate: true },
      h('label', { for: 'prompt', class: 'prompt-label' }, 'Prompt'),
      this.prompt,
      h('p', { id: 'prompt-hint', class: 'hint' }, 'Enter generates, Shift+Enter adds a line, Escape cancels.'),
      error('prompt'),
      // Beside Generate, not under Advanced: how many images a press makes.
      h('div', { class: 'field field-count' },
        h('label', { for: 'setting-count' }, 'Images'),
        this.#fields.count,
        h('p', { id: 'count-hint', class: 'hint' }, `1–${MAX_IMAGES_PER_REQUEST} per Generate; image i uses seed + i`),
        error('count')),
      this.#advanced,
      h('div', { class: 'actions' }, this.#generate, this.#cancel));
    this.element.addEventListener('submit', (e) => {
      e.preventDefault();
      if (!this.#ready || this.#busy) return;
      const settings = this.read();
      const count = settings && this.readCount(false);
      if (settings && count) handlers.onGenerate(settings, count);
    });
  }

  /** The fields as checked settings (a random seed drawn when the seed field is empty), or null after showing the errors. */
  read(): GenerationSettings | null {
    this.clearErrors();
    const f = this.#fields;
    const num = (el: HTMLInputElement | HTMLTextAreaElement) => (el.value.trim() === '' ? NaN : Number(el.value));
    const seedText = f.seed.value.trim();
    const negative = negativePromptFromField(f.negativePrompt.value);
    const penalty = f.repetitionPenalty.value.trim();
    try {
      return resolveSettings({
        prompt: this.prompt.value,
        ...(negative !== undefined ? { negativePrompt: negative } : {}),
        size: num(f.size),
        cfg: num(f.cfg),
        ...(penalty !== '' ? { repetitionPenalty: num(f.repetitionPenalty) } : {}),
        temperature: num(f.temperature),
        topK: num(f.topK),
        topP: num(f.topP),
        seed: seedText === '' ? randomSeed() : /^\d+$/.test(seedText) ? Number(seedText) : NaN,
        ...((f.sjd as HTMLInputElement).checked ? { sjd: { window: SJD_WINDOW } } : {}),
      });
    } catch (e) {
      if (e instanceof SimpleARError && this.showError(e)) return null;
      throw e;
    }
  }

  /** The Images field's count (1–8), or null after showing its error. `clear`: clear the other fields' errors first. */
  readCount(clear = true): number | null {
    if (clear) this.clearErrors();
    try {
      return countFromField(this.#fields.count.value);
    } catch (e) {
      if (e instanceof SimpleARError && this.showError(e)) return null;
      throw e;
    }
  }

  /** Shows a settings error next to its field; false when the error names no field. */
  showError(e: SimpleARError): boolean {
    const field = (e.code === 'PromptTooLong' ? 'prompt' : e.details.field) as SettingsField | undefined;
    const box = field && this.#errors.get(field);
    if (!box) return false;
    // The engine's message starts with the field's name; the label already says it.
    box.textContent = e.message.replace(/^\w+: /, '');
    box.hidden = false;
    const input = field === 'prompt' ? this.prompt : this.#fields[field as Exclude<SettingsField, 'prompt'>];
    input.setAttribute('aria-invalid', 'true');
    if (field !== 'prompt' && field !== 'count') this.#advanced.open = true;
    input.focus();
    return true;
  }

  clearErrors(): void {
    for (const [field, box] of this.#errors) {
      box.hidden = true;
      box.textContent = '';
      (field === 'prompt' ? this.prompt : this.#fields[field as Exclude<SettingsField, 'prompt'>]).removeAttribute('aria-invalid');
    }
  }

  /** Puts an image's settings back into the fields (seed included: a re-run gives the same image). */
  fill(s: GenerationSettings): void {
    const f = this.#fields;
    this.prompt.value = s.prompt;
    f.negativePrompt.value = negativeFieldText(s.negativePrompt);
    f.repetitionPenalty.value = s.repetitionPenalty === undefined ? '' : String(s.repetitionPenalty);
    f.size.value = String(s.size);
    f.cfg.value = String(s.cfg);
    f.temperature.value = String(s.temperature);
    f.topK.value = String(s.topK);
    f.topP.value = String(s.topP);
    f.seed.value = String(s.seed);
    (f.sjd as HTMLInputElement).checked = Boolean(s.sjd);
    this.clearErrors();
  }

  /** Generation is possible (a model is loaded). */
  setReady(ready: boolean): void {
    this.#ready = ready;
    this.#sync();
  }

  /** A generation is running: Generate off, Cancel on. */
  setBusy(busy: boolean): void {
    this.#busy = busy;
    this.#sync();
  }

  #sync(): void {
    // Keep keyboard focus on a live control: a disabled button drops focus to the page.
    const focused = document.activeElement;
    this.#generate.disabled = !this.#ready || this.#busy;
    this.#cancel.disabled = !this.#busy;
    if (focused === this.#generate && this.#busy) this.#cancel.focus();
    else if (focused === this.#cancel && !this.#busy) (this.#ready ? this.#generate : this.prompt).focus();
    this.element.dataset.state = this.#busy ? 'busy' : this.#ready ? 'ready' : 'waiting';
  }
}
