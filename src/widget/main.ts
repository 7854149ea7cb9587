// embed.html: the SimpleAR widget for iframes. Its own small UI (prompt, image, progress) and
// the postMessage protocol (src/embed/protocol.ts) for the host page, both driving one engine.
import './widget.css';
import { EngineClient } from '../client/engine-client.ts';
import { PROTOCOL_VERSION, type GenerateParams, type ProgressPhase, type WidgetCapabilities } from '../embed/protocol.ts';
import { MAX_IMAGES_PER_REQUEST, SIZE_LIMITS } from '../core/engine/settings.ts';
import { parseWidgetConfig, type WidgetConfig } from './config.ts';
import { openHostChannel } from './host-channel.ts';
import { toFailure, WidgetRunner, type ImageOf, type WidgetFailure, type WidgetImage } from './runner.ts';
import { detectStorage, requestStorageAccess } from './storage-access.ts';
import { WidgetView } from './view.ts';

const PARTITIONED_NOTICE =
  'This site keeps its own copy of the model: browsers keep the storage of an embedded page separate for each site, ' +
  'so the first image here downloads the model again, even if you used SimpleAR elsewhere.';

const UNAVAILABLE_NOTICE =
  'This browser gives this embedded page no storage here (third-party storage is blocked), so the model ' +
  'cannot be kept: it is downloaded again each time this page is opened.';

interface Job {
  onProgress(phase: ProgressPhase, done: number, total: number, of?: ImageOf): void;
  /** Called once per image, in image order, after the request's last image is made. */
  onResult(image: WidgetImage): void;
  onError(failure: WidgetFailure): void;
}

function start(runner: WidgetRunner, view: WidgetView, key: string, params: GenerateParams, job: Job): void {
  view.running(params.prompt);
  // The view shows the latest request; the cancel button stops that one.
  view.cancelButton.onclick = () => runner.cancel(key);
  runner
    .run(key, params, (phase, done, total, of) => {
      view.progress(phase, done, total, of);
      job.onProgress(phase, done, total, of);
    })
    .then(
      (images) => {
        const first = images[0]!;
        const seeds = images.length === 1 ? `seed ${first.seed}` : `seeds ${first.seed}–${images[images.length - 1]!.seed}`;
        view.images(
          images.map((image) => ({ png: image.png, caption: `${image.prompt} (seed ${image.seed})` })),
          `${first.prompt} (${seeds})`,
        );
        view.status(images.length === 1 ? `Done: ${first.width}×${first.height}, ${seeds}.` : `Done: ${images.length} images, ${first.width}×${first.height}, ${seeds}.`);
        for (const image of images) job.onResult(image);
      },
      (error: unknown) => {
        const failure = toFailure(error);
        view.status(failure.code === 'Aborted' ? 'Cancelled.' : failure.message, failure.code === 'Aborted' ? 'info' : 'error');
        job.onError(failure);
      },
    )
    .finally(() => {
      if (!runner.busy) view.idle();
    });
}

async function main(): Promise<void> {
  const view = new WidgetView();
  let config: WidgetConfig;
  try {
    config = parseWidgetConfig(location.search, location.href);
  } catch (e) {
    view.status(`This widget's address is wrong: ${e instanceof Error ? e.message : String(e)}`, 'error');
    view.generateButton.disabled = true;
    return;
  }
  if (config.theme !== 'auto') document.documentElement.dataset.theme = config.theme;
  view.form.hidden = config.hidePrompt;

  const client = new EngineClient();
  // Storage first: it decides how the model is prepared. Hosts wait for `ready` before asking.
  const [storage, device] = await Promise.all([detectStorage(), client.getDeviceInfo().catch(() => null)]);
  if (storage.storage !== 'first-party') {
    view.storageNotice(storage.storage === 'partitioned' ? PARTITIONED_NOTICE : UNAVAILABLE_NOTICE, storage.canRequestAccess);
    view.storageButton.addEventListener('click', () => {
      void requestStorageAccess().then((granted) =>
        view.storageNotice(
          granted
            ? 'Storage access granted for this page. The model store lives in the engine’s worker, which browsers do not give shared storage yet, so the model is still kept per site.'
            : 'Storage access was not granted.',
          false,
        ),
      );
    });
  }

  const runner = new WidgetRunner(client, config, { storageAvailable: storage.storage !== 'unavailable' });
  const quiet: Job = { onProgress: () => {}, onResult: () => {}, onError: () => {} };
  view.form.addEventListener('submit', (event) => {
    event.preventDefault();
    const prompt = view.prompt.value.trim();
    if (prompt) start(runner, view, `local ${Date.now()}`, { prompt, count: config.count }, quiet);
  });
  view.generateButton.disabled = false;

  const channel = openHostChannel(config.origins, (message, reply, origin) => {
    if ('malformed' in message) {
      if (message.id !== undefined) reply({ type: 'simplear:error', id: message.id, code: 'InvalidRequest', message: message.malformed });
      return;
    }
    const { id } = message;
    const key = `${origin} ${JSON.stringify(id)}`;
    if (message.type === 'simplear:cancel') return runner.cancel(key);
    if (runner.has(key)) {
      reply({ type: 'simplear:error', id, code: 'InvalidRequest', message: `Request ${JSON.stringify(id)} is already running.` });
      return;
    }
    const { type: _type, id: _id, ...params } = message;
    start(runner, view, key, params, {
      onProgress: (phase, done, total, of) => reply({ type: 'simplear:progress', id, phase, done, total, ...(of ? { image: of.image, count: of.count } : {}) }),
      onResult: ({ png, seed, width, height, index, count, codes, keptRows }) =>
        reply({ type: 'simplear:result', id, png, seed, width, height, index, count, codes, ...(keptRows !== undefined ? { keptRows } : {}) }),
      onError: ({ code, message: text, field }) => reply({ type: 'simplear:error', id, code, message: text, ...(field !== undefined ? { field } : {}) }),
    });
  });

  const capabilities: WidgetCapabilities = {
    webgpu: device?.ok ?? false,
    crossOriginIsolated: self.crossOriginIsolated,
    storage: storage.storage,
    cancel: true,
    maxCount: MAX_IMAGES_PER_REQUEST,
    keep: true,
    sizes: { min: SIZE_LIMITS.min, max: config.maxSize, default: config.defaults.size },
  };
  view.status(device?.ok ? 'Ready.' : 'Ready, without WebGPU: images will be slow.');
  channel.announce({ type: 'simplear:ready', version: PROTOCOL_VERSION, capabilities });
}

void main();
