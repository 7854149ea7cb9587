// embed.js: the host-side library. Mounts the SimpleAR widget (embed.html) in an iframe and
// turns its postMessage protocol into promises and progress callbacks:
//
//   import { mount } from 'https://simplear.example/embed.js';
//   const widget = mount(document.querySelector('#art'), { model: '…', vq: '…' });
//   const { png, seed } = await widget.generate({ prompt: 'a red fox' }, { onProgress, signal });
//   const four = await widget.generate({ prompt: 'a red fox', count: 4 }, { onImage });  // an array
//
// Built on its own into one self-contained ES module (vite.config.ts), served at /embed.js.
import {
  PROTOCOL_VERSION,
  type GenerateParams,
  type HostMessage,
  type ResultMessage,
  type ProgressPhase,
  type RequestId,
  type WidgetCapabilities,
  type WidgetMessage,
} from './protocol.ts';

export { PROTOCOL_VERSION } from './protocol.ts';
export type { GenerateParams, KeptRowsParam, ProgressPhase, WidgetCapabilities, WidgetStorage } from './protocol.ts';

export interface MountOptions {
  /** The widget page. Default: embed.html beside this script. */
  src?: string | URL;
  /** Model sources, as on the app's own page: `bundle`, or `model` + `vq` (base URLs). */
  model?: string;
  vq?: string;
  bundle?: string;
  /** LM weight format to prepare (default: the widget's, q4). */
  weights?: 'q4' | 'q8' | 'f16' | 'f32';
  /** VQ decoder precision (default: the widget's). */
  decoder?: 'f16' | 'f32';
  /** Defaults for requests that leave them out. */
  defaults?: Partial<Pick<GenerateParams, 'size' | 'cfg' | 'repetitionPenalty' | 'temperature' | 'topK' | 'topP'>>;
  /**
   * Images per generation from the widget's own prompt box, 1 … 8 (default 1). Not a default for
   * generate(): a request makes `request.count` images, one when it leaves count out.
   */
  count?: number;
  /** Largest image side the engine is sized for (GPU memory grows with it). Default 1024. */
  maxSize?: number;
  theme?: 'auto' | 'light' | 'dark';
  /** Hide the widget's own prompt box: only the host drives it. */
  hidePrompt?: boolean;
  /** CSS size of the iframe (default 100% × 420px). */
  width?: string;
  height?: string;
  /** The iframe's accessible name. */
  title?: string;
  /** How long to wait for the widget's ready message (default 30 s). */
  readyTimeoutMs?: number;
}

export interface GenerateProgress {
  phase: ProgressPhase;
  done: number;
  total: number;
  /** For a request of several images: which one (0 … count − 1) a generation phase is about. */
  image?: number;
  count?: number;
}

export interface GenerateOptions {
  onProgress?: (progress: GenerateProgress) => void;
  /** Each image as it arrives, in image order, before the promise resolves with all of them. */
  onImage?: (image: EmbedResult) => void;
  /** Aborting sends `simplear:cancel`; the promise rejects with an EmbedError of code 'Aborted'. */
  signal?: AbortSignal;
}

export interface EmbedResult {
  /** image/png */
  png: Blob;
  /** Image i of a request seeded s has seed s + i. */
  seed: number;
  width: number;
  height: number;
  /** Place in the request (0 … count − 1) and the request's count. */
  index: number;
  count: number;
  /** Visual codes, raster order: pass them back as `keep.codes` to redraw below a row. */
  codes: Int32Array;
  /** Latent rows kept from the request's `keep`; absent when none. */
  keptRows?: number;
}

export interface EmbeddedWidget {
  readonly iframe: HTMLIFrameElement;
  /** Resolves with the widget's capabilities once it has announced itself. */
  readonly ready: Promise<WidgetCapabilities>;
  /** One image: `count` left out (the call and its result as before `count` existed). */
  generate(request: GenerateParams & { count?: undefined }, options?: GenerateOptions): Promise<EmbedResult>;
  /** `count` images (1 … capabilities.maxCount), image i with seed + i: all of them, in image order. */
  generate(request: GenerateParams & { count: number }, options?: GenerateOptions): Promise<EmbedResult[]>;
  generate(request: GenerateParams, options?: GenerateOptions): Promise<EmbedResult | EmbedResult[]>;
  /** Removes the iframe; pending requests reject with code 'Destroyed'. */
  destroy(): void;
}

/** A failure reported by the widget (its `code`), or by this library ('NotReady', 'Destroyed', 'VersionMismatch'). */
export class EmbedError extends Error {
  constructor(
    readonly code: string,
    message: string,
    /** For InvalidSettings: the request field at fault ('count', 'keep', 'size', …). */
    readonly field?: string,
  ) {
    super(message);
    this.name = 'EmbedError';
  }
}

interface Pending {
  /** The images so far; the request is complete with the one whose index is count − 1. */
  results: EmbedResult[];
  resolve(results: EmbedResult[]): void;
  reject(error: EmbedError): void;
  onProgress?: GenerateOptions['onProgress'];
  onImage?: GenerateOptions['onImage'];
}

function toResult(message: ResultMessage): EmbedResult {
  const { png, seed, width, height, index, count, codes, keptRows } = message;
  // A widget from before `count` sends none of index/count/codes: its one result ends the request.
  return { png, seed, width, height, index: index ?? 0, count: count ?? 1, codes, ...(keptRows !== undefined ? { keptRows } : {}) };
}

function widgetUrl(options: MountOptions): URL {
  // Resolved at run time against wherever embed.js was loaded from (not a build-time asset).
  const here = import.meta.url;
  const url = new URL(options.src ?? new URL('embed.html', here));
  const set = (key: string, value: string | number | boolean | undefined) => {
    if (value !== undefined && value !== false) url.searchParams.set(key, String(value));
  };
  // The widget answers only the origins listed here: this page's.
  set('origins', location.origin);
  set('model', options.model);
  set('vq', options.vq);
  set('bundle', options.bundle);
  set('weights', options.weights);
  set('decoder', options.decoder);
  set('count', options.count);
  set('maxSize', options.maxSize);
  set('theme', options.theme);
  set('hidePrompt', options.hidePrompt ? 1 : undefined);
  for (const [key, value] of Object.entries(options.defaults ?? {})) set(key, value);
  return url;
}

/** Mounts the widget into `element` and returns its controller. */
export function mount(element: HTMLElement, options: MountOptions = {}): EmbeddedWidget {
  const src = widgetUrl(options);
  const widgetOrigin = src.origin;
  const iframe = document.createElement('iframe');
  iframe.src = src.href;
  iframe.title = options.title ?? 'SimpleAR image generator';
  // No `allow` attribute: Chromium does not gate WebGPU by permissions policy (it logs
  // "Unrecognized feature: 'webgpu'"); the e2e test checks WebGPU inside a cross-site frame.
  iframe.style.border = '0';
  iframe.style.width = options.width ?? '100%';
  iframe.style.height = options.height ?? '420px';

  const pending = new Map<RequestId, Pending>();
  let nextId = 0;
  let destroyed = false;
  let announce: (capabilities: WidgetCapabilities) => void = () => {};
  let fail: (error: EmbedError) => void = () => {};
  const ready = new Promise<WidgetCapabilities>((resolve, reject) => {
    announce = resolve;
    fail = reject;
  });
  ready.catch(() => {}); // observed through generate()
  const timer = setTimeout(
    () => fail(new EmbedError('NotReady', `The widget at ${widgetOrigin} did not answer: is this page's origin in its ?origins=?`)),
    options.readyTimeoutMs ?? 30_000,
  );

  const onMessage = (event: MessageEvent) => {
    if (event.source !== iframe.contentWindow || event.origin !== widgetOrigin) return;
    const message = event.data as WidgetMessage;
    if (typeof message !== 'object' || message === null || typeof message.type !== 'string') return;
    if (message.type === 'simplear:ready') {
      clearTimeout(timer);
      if (Math.floor(message.version) !== PROTOCOL_VERSION) {
        fail(new EmbedError('VersionMismatch', `The widget speaks protocol ${message.version}; this embed.js speaks ${PROTOCOL_VERSION}.`));
      } else {
        announce(message.capabilities);
      }
      return;
    }
    const request = pending.get(message.id);
    if (!request) return;
    if (message.type === 'simplear:progress') {
      const { phase, done, total, image, count } = message;
      request.onProgress?.({ phase, done, total, ...(image !== undefined && count !== undefined ? { image, count } : {}) });
    } else if (message.type === 'simplear:result') {
      const result = toResult(message);
      request.results.push(result);
      request.onImage?.(result);
      if (result.index >= result.count - 1) {
        pending.delete(message.id);
        request.resolve(request.results);
      }
    } else if (message.type === 'simplear:error') {
      pending.delete(message.id);
      request.reject(new EmbedError(message.code, message.message, message.field));
    }
  };
  window.addEventListener('message', onMessage);
  element.append(iframe);

  const post = (message: HostMessage) => iframe.contentWindow?.postMessage(message, widgetOrigin);

  function generate(request: GenerateParams & { count?: undefined }, options?: GenerateOptions): Promise<EmbedResult>;
  function generate(request: GenerateParams & { count: number }, options?: GenerateOptions): Promise<EmbedResult[]>;
  function generate(request: GenerateParams, options?: GenerateOptions): Promise<EmbedResult | EmbedResult[]>;
  async function generate(request: GenerateParams, { onProgress, onImage, signal }: GenerateOptions = {}): Promise<EmbedResult | EmbedResult[]> {
    if (destroyed) throw new EmbedError('Destroyed', 'This widget was destroyed.');
    if (signal?.aborted) throw new EmbedError('Aborted', 'The generation was cancelled.');
    await ready;
    const id = `r${++nextId}`;
    const results = await new Promise<EmbedResult[]>((resolve, reject) => {
      const onAbort = () => post({ type: 'simplear:cancel', id });
      const settle = () => signal?.removeEventListener('abort', onAbort);
      pending.set(id, {
        results: [],
        resolve: (r) => (settle(), resolve(r)),
        reject: (e) => (settle(), reject(e)),
        ...(onProgress ? { onProgress } : {}),
        ...(onImage ? { onImage } : {}),
      });
      signal?.addEventListener('abort', onAbort, { once: true });
      post({ ...request, type: 'simplear:generate', id });
    });
    // A request that named a count gets an array, even of one; one that did not, its one image.
    return request.count === undefined ? results[0]! : results;
  }

  return {
    iframe,
    ready,
    generate,
    destroy() {
      if (destroyed) return;
      destroyed = true;
      clearTimeout(timer);
      window.removeEventListener('message', onMessage);
      iframe.remove();
      fail(new EmbedError('Destroyed', 'This widget was destroyed.'));
      for (const request of pending.values()) request.reject(new EmbedError('Destroyed', 'This widget was destroyed.'));
      pending.clear();
    },
  };
}
