// The engine host's device-failure handling (src/core/host/gpu-guard.ts) with a stand-in
// GPUDevice: a lost device rejects the running GPU call and every later one, once reported; ORT's
// allocation errors become GpuOutOfMemory; our own cancels and typed errors are not the device's.
import { describe, expect, it } from 'vitest';
import { GpuGuard } from '../../src/core/host/gpu-guard.ts';
import type { EngineDevice } from '../../src/core/engine/webgpu-device.ts';
import { SimpleARError } from '../../src/core/base/errors.ts';

/** A device whose loss the test triggers. */
function fakeDevice(): { device: EngineDevice; lose: () => void } {
  let lose!: () => void;
  const lost = new Promise<{ reason: string; message: string }>((resolve) => (lose = () => resolve({ reason: 'destroyed', message: 'gone' })));
  const gpuDevice = { lost, addEventListener: () => {} } as unknown as GPUDevice;
  return { device: { device: gpuDevice } as EngineDevice, lose };
}

const never = () => new Promise<never>(() => {});

describe('GpuGuard', () => {
  it('a lost device rejects the running call and every later one; the failure is reported once', async () => {
    const failures: string[] = [];
    const guard = new GpuGuard((e) => failures.push(e.code));
    const { device, lose } = fakeDevice();
    let requests = 0;
    const request = async () => (requests++, device);
    expect(await guard.device(request)).toBe(device);
    expect(await guard.device(request)).toBe(device);
    expect(requests).toBe(1);

    const running = guard.run(never);
    lose();
    await expect(running).rejects.toMatchObject({ code: 'DeviceLost' });
    await expect(guard.run(async () => 1)).rejects.toMatchObject({ code: 'DeviceLost' });
    expect(() => guard.check()).toThrow(SimpleARError);
    expect(failures).toEqual(['DeviceLost']);
  });

  it('ORT’s allocation failure becomes GpuOutOfMemory and ends the device’s use', async () => {
    const failures: string[] = [];
    const guard = new GpuGuard((e) => failures.push(e.code));
    await expect(guard.run(() => Promise.reject(new Error('Failed to allocate a buffer of size 2079238052')))).rejects.toMatchObject({ code: 'GpuOutOfMemory' });
    expect(failures).toEqual(['GpuOutOfMemory']);
    expect(guard.failure?.code).toBe('GpuOutOfMemory');
  });

  it('our own cancel and our own typed errors leave the device in use', async () => {
    const guard = new GpuGuard(() => {
      throw new Error('not a device failure');
    });
    const abort = new DOMException('Cancelled', 'AbortError');
    await expect(guard.run(() => Promise.reject(abort), () => true)).rejects.toBe(abort);
    const typed = new SimpleARError('InvalidSettings', 'size must be a multiple of 16');
    await expect(guard.run(() => Promise.reject(typed))).rejects.toBe(typed);
    expect(guard.failure).toBeUndefined();
    expect(await guard.run(async () => 7)).toBe(7);
  });
});
