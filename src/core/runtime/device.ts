// What the device offers for WebGPU work: adapter identity, the features and limits the
// engine's graphs depend on, and the environment (isolation, cores). No DOM: this runs in
// the worker (navigator.gpu exists in workers) and, with an injected GPU object, in Node.

/** Why WebGPU cannot be used; the UI picks its advice from this. */
export type WebGPUUnavailableReason =
  /** Not https/localhost: browsers hide navigator.gpu outside secure contexts. */
  | 'insecure-context'
  /** The browser has no WebGPU API at all (or it is switched off). */
  | 'no-api'
  /** The API exists but no adapter was offered (GPU blocklisted, disabled, or none). */
  | 'no-adapter'
  /** requestAdapter() threw. */
  | 'adapter-request-failed';

export interface WebGPUUnavailable {
  ok: false;
  code: 'WebGPUUnavailable';
  reason: WebGPUUnavailableReason;
  /** One or two plain sentences a person can act on. */
  message: string;
  environment: EnvironmentFacts;
}

export interface AdapterFacts {
  vendor: string;
  architecture: string;
  device: string;
  description: string;
  /** A software adapter (e.g. SwiftShader): works, but far slower than a GPU. */
  isFallbackAdapter: boolean;
}

/** The optional features the engine cares about. */
export interface FeatureFacts {
  /** f16 arithmetic in shaders: f16 activations are used only when present. */
  shaderF16: boolean;
  subgroups: boolean;
  timestampQuery: boolean;
  /** Every feature the adapter reports, sorted. */
  all: string[];
}

/** The limits that bound model and buffer sizes (bytes unless the name says otherwise). */
export interface LimitFacts {
  maxBufferSize: number;
  maxStorageBufferBindingSize: number;
  maxStorageBuffersPerShaderStage: number;
  maxComputeWorkgroupStorageSize: number;
  maxComputeInvocationsPerWorkgroup: number;
  maxComputeWorkgroupSizeX: number;
  maxComputeWorkgroupsPerDimension: number;
}

export interface EnvironmentFacts {
  /** COOP/COEP in effect: SharedArrayBuffer and wasm threads are allowed. */
  crossOriginIsolated: boolean;
  secureContext: boolean;
  /** Logical CPU cores reported by the browser (0 when unknown). */
  hardwareConcurrency: number;
}

export interface WebGPUAvailable {
  ok: true;
  adapter: AdapterFacts;
  features: FeatureFacts;
  limits: LimitFacts;
  environment: EnvironmentFacts;
}

export type DeviceFacts = WebGPUAvailable | WebGPUUnavailable;

/** The WebGPU entry point and the environment to probe; defaults to the current global scope. */
export interface ProbeScope {
  gpu?: GPU | undefined;
  isSecureContext?: boolean | undefined;
  crossOriginIsolated?: boolean | undefined;
  hardwareConcurrency?: number | undefined;
}

const LIMIT_NAMES: (keyof LimitFacts)[] = [
  'maxBufferSize',
  'maxStorageBufferBindingSize',
  'maxStorageBuffersPerShaderStage',
  'maxComputeWorkgroupStorageSize',
  'maxComputeInvocationsPerWorkgroup',
  'maxComputeWorkgroupSizeX',
  'maxComputeWorkgroupsPerDimension',
];

function currentScope(): ProbeScope {
  const g = globalThis as typeof globalThis & { navigator?: Partial<Navigator> };
  return {
    gpu: g.navigator?.gpu,
    isSecureContext: g.isSecureContext,
    crossOriginIsolated: g.crossOriginIsolated,
    hardwareConcurrency: g.navigator?.hardwareConcurrency,
  };
}

function environmentOf(scope: ProbeScope): EnvironmentFacts {
  return {
    crossOriginIsolated: scope.crossOriginIsolated === true,
    // Node and other non-browser hosts have no notion of it; treat them as secure.
    secureContext: scope.isSecureContext !== false,
    hardwareConcurrency: scope.hardwareConcurrency ?? 0,
  };
}

/**
 * What this device can still do without WebGPU. The page's status line and its device panel both
 * say it in these words (webGpuUnavailableStatus, and each reason's message below), so they agree.
 */
export const CPU_FALLBACK = 'images can still be made on the CPU (WebAssembly), much more slowly';

const ADVICE =
  `Without it, ${CPU_FALLBACK}. For GPU speed, use a current Chrome or Edge (version 113 or ` +
  'later) on a computer with a supported GPU.';

/** The status line's words for a device without WebGPU (the panel gives the reason). */
export const webGpuUnavailableStatus = (): string => `WebGPU is not available: ${CPU_FALLBACK} (see “Your device” below).`;

function unavailable(
  reason: WebGPUUnavailableReason,
  environment: EnvironmentFacts,
  detail?: string,
): WebGPUUnavailable {
  const messages: Record<WebGPUUnavailableReason, string> = {
    'insecure-context':
      `WebGPU is only offered to secure pages: open this app over https:// or from localhost. Until then, ${CPU_FALLBACK}.`,
    'no-api': `This browser does not offer WebGPU. ${ADVICE}`,
    'no-adapter':
      'This browser supports WebGPU but found no usable GPU adapter (the GPU may be ' +
      `blocklisted or hardware acceleration turned off). ${ADVICE} On Linux, Chrome may need ` +
      'WebGPU switched on at chrome://flags/#enable-unsafe-webgpu.',
    'adapter-request-failed':
      `Asking the browser for a GPU adapter failed${detail ? ` (${detail})` : ''}. ${ADVICE}`,
  };
  return { ok: false, code: 'WebGPUUnavailable', reason, message: messages[reason], environment };
}

function adapterFacts(adapter: GPUAdapter): AdapterFacts {
  const info = adapter.info;
  // Older browsers had isFallbackAdapter on the adapter itself; reading it there in newer
  // ones logs a deprecation warning, so only look when info lacks it.
  const fallback =
    typeof info.isFallbackAdapter === 'boolean'
      ? info.isFallbackAdapter
      : (adapter as GPUAdapter & { isFallbackAdapter?: boolean }).isFallbackAdapter === true;
  return {
    vendor: info.vendor,
    architecture: info.architecture,
    device: info.device,
    description: info.description,
    isFallbackAdapter: fallback,
  };
}

function featureFacts(adapter: GPUAdapter): FeatureFacts {
  const all = [...adapter.features].sort();
  return {
    shaderF16: adapter.features.has('shader-f16'),
    subgroups: adapter.features.has('subgroups'),
    timestampQuery: adapter.features.has('timestamp-query'),
    all,
  };
}

function limitFacts(adapter: GPUAdapter): LimitFacts {
  const limits = {} as LimitFacts;
  for (const name of LIMIT_NAMES) limits[name] = adapter.limits[name];
  return limits;
}

/**
 * Probes WebGPU: the default adapter's identity, features and limits, or why there is none.
 * Never throws; an unavailable device is a result the UI can show.
 */
export async function probeDevice(scope: ProbeScope = currentScope()): Promise<DeviceFacts> {
  const environment = environmentOf(scope);
  if (!scope.gpu) {
    return unavailable(environment.secureContext ? 'no-api' : 'insecure-context', environment);
  }
  let adapter: GPUAdapter | null;
  try {
    adapter = await scope.gpu.requestAdapter();
  } catch (e) {
    return unavailable('adapter-request-failed', environment, e instanceof Error ? e.message : String(e));
  }
  if (!adapter) return unavailable('no-adapter', environment);
  return {
    ok: true,
    adapter: adapterFacts(adapter),
    features: featureFacts(adapter),
    limits: limitFacts(adapter),
    environment,
  };
}
