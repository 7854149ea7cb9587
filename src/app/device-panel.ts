// "Your device": the WebGPU adapter, its features and limits as the engine worker sees them,
// or a plain explanation when WebGPU is missing. Also offers the GPU self-test.
import type { DeviceFacts, EngineClient, SelfTestReport } from '../client/engine-client.ts';
import { formatBytes, formatMs, yesNo } from './format.ts';
import type { StatusLine } from './status-line.ts';

/** Results within this of the float64 reference count as correct (f32 GPU arithmetic). */
const SELF_TEST_TOLERANCE = 1e-4;

interface Fact {
  /** Stable key, also the row's data-fact attribute (tests and styling use it). */
  key: string;
  label: string;
  value: string;
  note?: string;
}

function factsOf(device: Extract<DeviceFacts, { ok: true }>): Fact[] {
  const { adapter, features, limits, environment } = device;
  return [
    { key: 'vendor', label: 'GPU vendor', value: adapter.vendor || 'not reported' },
    { key: 'architecture', label: 'Architecture', value: adapter.architecture || 'not reported' },
    ...(adapter.description ? [{ key: 'description', label: 'Adapter', value: adapter.description }] : []),
    {
      key: 'fallback',
      label: 'Software (fallback) adapter',
      value: yesNo(adapter.isFallbackAdapter),
      ...(adapter.isFallbackAdapter ? { note: 'runs on the CPU: very slow for real images' } : {}),
    },
    {
      key: 'shader-f16',
      label: 'shader-f16',
      value: yesNo(features.shaderF16),
      note: features.shaderF16 ? 'half-precision activations' : 'full-precision (f32) activations',
    },
    { key: 'subgroups', label: 'subgroups', value: yesNo(features.subgroups) },
    { key: 'timestamp-query', label: 'timestamp-query', value: yesNo(features.timestampQuery) },
    { key: 'max-buffer-size', label: 'Max buffer size', value: formatBytes(limits.maxBufferSize) },
    {
      key: 'max-storage-binding',
      label: 'Max storage binding',
      value: formatBytes(limits.maxStorageBufferBindingSize),
    },
    {
      key: 'max-workgroup-storage',
      label: 'Workgroup memory',
      value: formatBytes(limits.maxComputeWorkgroupStorageSize),
    },
    {
      key: 'max-invocations',
      label: 'Invocations per workgroup',
      value: String(limits.maxComputeInvocationsPerWorkgroup),
    },
    { key: 'cross-origin-isolated', label: 'Cross-origin isolated', value: yesNo(environment.crossOriginIsolated) },
    { key: 'cpu-cores', label: 'CPU cores', value: String(environment.hardwareConcurrency || 'unknown') },
  ];
}

function renderFacts(container: HTMLElement, facts: Fact[]): void {
  const list = document.createElement('dl');
  for (const fact of facts) {
    const row = document.createElement('div');
    row.dataset.fact = fact.key;
    const term = document.createElement('dt');
    term.textContent = fact.label;
    const value = document.createElement('dd');
    value.textContent = fact.value;
    if (fact.note) {
      const note = document.createElement('span');
      note.className = 'note';
      note.textContent = fact.note;
      value.append(' ', note);
    }
    row.append(term, value);
    list.append(row);
  }
  container.replaceChildren(list);
}

function renderUnavailable(container: HTMLElement, device: Extract<DeviceFacts, { ok: false }>): void {
  const message = document.createElement('p');
  message.className = 'device-unavailable';
  message.dataset.reason = device.reason;
  message.textContent = device.message;
  container.replaceChildren(message);
}

function summarize(report: SelfTestReport): { text: string; passed: boolean } {
  const diff = report.maxAbsDiffFromReference;
  const passed = diff <= SELF_TEST_TOLERANCE;
  const verdict = passed
    ? `Passed: every node ran on WebGPU with ONNX Runtime Web ${report.ortVersion}.`
    : `Wrong numbers: results differ from the reference by up to ${diff.toExponential(2)}.`;
  const timing =
    `First run ${formatMs(report.timings.firstRunMs)} (compiles shaders), ` +
    `warm run ${formatMs(report.timings.warmRunMs)}; largest difference from the reference ${diff.toExponential(1)}.`;
  return { text: `${verdict} ${timing}`, passed };
}

/** Fills the device panel from the worker and wires the self-test button. */
export async function mountDevicePanel(section: HTMLElement, client: EngineClient, status: StatusLine): Promise<DeviceFacts> {
  const factsBox = section.querySelector<HTMLElement>('.device-facts')!;
  const button = section.querySelector<HTMLButtonElement>('.self-test-run')!;
  const summary = section.querySelector<HTMLElement>('.self-test-summary')!;
  const raw = section.querySelector<HTMLDetailsElement>('.self-test-raw')!;

  const device = await client.getDeviceInfo();
  factsBox.removeAttribute('aria-busy');
  if (!device.ok) {
    renderUnavailable(factsBox, device);
    section.querySelector<HTMLElement>('.self-test')!.hidden = true;
    return device;
  }
  renderFacts(factsBox, factsOf(device));
  button.disabled = false;

  button.addEventListener('click', async () => {
    button.disabled = true;
    summary.dataset.state = 'running';
    summary.textContent = 'Running a small ONNX graph on your GPU…';
    status.show('Running the GPU self-test…', 'busy');
    try {
      const report = await client.selfTest();
      const { text, passed } = summarize(report);
      summary.textContent = text;
      summary.dataset.state = passed ? 'passed' : 'failed';
      raw.querySelector('pre')!.textContent = JSON.stringify(report, null, 1);
      raw.hidden = false;
      status.show(passed ? 'GPU self-test passed.' : 'GPU self-test gave wrong numbers.', passed ? 'ok' : 'error');
    } catch (e) {
      summary.textContent = `The self-test failed: ${e instanceof Error ? e.message : String(e)}`;
      summary.dataset.state = 'failed';
      status.show('GPU self-test failed.', 'error');
    } finally {
      button.disabled = false;
    }
  });
  return device;
}
