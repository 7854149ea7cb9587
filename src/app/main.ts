// The page: one EngineClient (the only way to the worker), panels that render from it, and
// the status line. Sections mount in order; the generation UI will mount alongside.
import './styles.css';
import { EngineClient } from '../client/engine-client.ts';
import { mountDevicePanel } from './device-panel.ts';
import { StatusLine } from './status-line.ts';

async function main(): Promise<void> {
  const status = new StatusLine(document.querySelector<HTMLElement>('#status')!);
  const client = new EngineClient();
  // The programmatic handle (console, automation, tests): the same client the UI uses.
  (globalThis as { simplear?: { client: EngineClient } }).simplear = { client };
  try {
    const device = await mountDevicePanel(document.querySelector<HTMLElement>('#device')!, client, status);
    if (!device.ok) status.show('WebGPU is not available: see “Your device” below.', 'warning');
    else if (device.adapter.isFallbackAdapter) status.show('Ready. This is a software GPU: generation will be slow.', 'ok');
    else status.show('Ready.', 'ok');
  } catch (e) {
    status.show(`Could not start the engine: ${e instanceof Error ? e.message : String(e)}`, 'error');
  }
}

void main();
