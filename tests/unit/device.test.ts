// probeDevice turns whatever the browser offers into facts or a clear "unavailable" result.
import { describe, expect, test } from 'vitest';
import { probeDevice, type ProbeScope } from '../../src/core/runtime/device.ts';

const LIMITS = {
  maxBufferSize: 1 << 30,
  maxStorageBufferBindingSize: 1 << 30,
  maxStorageBuffersPerShaderStage: 10,
  maxComputeWorkgroupStorageSize: 32768,
  maxComputeInvocationsPerWorkgroup: 256,
  maxComputeWorkgroupSizeX: 256,
  maxComputeWorkgroupsPerDimension: 65535,
  maxBindGroups: 4, // not reported: only the limits that matter are kept
};

function fakeAdapter(info: Partial<GPUAdapterInfo>, features: string[], legacyFallback?: boolean): GPUAdapter {
  return {
    info: { vendor: 'google', architecture: 'swiftshader', device: '', description: 'SwiftShader device', ...info },
    features: new Set(features),
    limits: LIMITS,
    ...(legacyFallback === undefined ? {} : { isFallbackAdapter: legacyFallback }),
  } as unknown as GPUAdapter;
}

const gpuReturning = (result: () => Promise<GPUAdapter | null>) => ({ requestAdapter: result }) as unknown as GPU;
const secure: ProbeScope = { isSecureContext: true, crossOriginIsolated: true, hardwareConcurrency: 8 };

describe('probeDevice', () => {
  test('reports adapter identity, the features and limits that matter, and the environment', async () => {
    const adapter = fakeAdapter({ isFallbackAdapter: true }, ['timestamp-query', 'subgroups', 'float32-filterable']);
    const facts = await probeDevice({ ...secure, gpu: gpuReturning(async () => adapter) });
    expect(facts).toEqual({
      ok: true,
      adapter: {
        vendor: 'google',
        architecture: 'swiftshader',
        device: '',
        description: 'SwiftShader device',
        isFallbackAdapter: true,
      },
      features: {
        shaderF16: false,
        subgroups: true,
        timestampQuery: true,
        all: ['float32-filterable', 'subgroups', 'timestamp-query'],
      },
      limits: {
        maxBufferSize: 1 << 30,
        maxStorageBufferBindingSize: 1 << 30,
        maxStorageBuffersPerShaderStage: 10,
        maxComputeWorkgroupStorageSize: 32768,
        maxComputeInvocationsPerWorkgroup: 256,
        maxComputeWorkgroupSizeX: 256,
        maxComputeWorkgroupsPerDimension: 65535,
      },
      environment: { crossOriginIsolated: true, secureContext: true, hardwareConcurrency: 8 },
    });
  });

  test('sees shader-f16 on a hardware adapter', async () => {
    const adapter = fakeAdapter({ vendor: 'nvidia', architecture: 'hopper', isFallbackAdapter: false }, ['shader-f16']);
    const facts = await probeDevice({ ...secure, gpu: gpuReturning(async () => adapter) });
    expect(facts.ok && facts.features.shaderF16).toBe(true);
    expect(facts.ok && facts.adapter.isFallbackAdapter).toBe(false);
  });

  test('falls back to the legacy adapter.isFallbackAdapter only when info lacks it', async () => {
    const adapter = fakeAdapter({ isFallbackAdapter: undefined }, [], true);
    const facts = await probeDevice({ ...secure, gpu: gpuReturning(async () => adapter) });
    expect(facts.ok && facts.adapter.isFallbackAdapter).toBe(true);
  });

  test('no navigator.gpu on a secure page: the browser lacks WebGPU', async () => {
    const facts = await probeDevice({ ...secure, gpu: undefined });
    expect(facts).toMatchObject({ ok: false, code: 'WebGPUUnavailable', reason: 'no-api' });
    expect(!facts.ok && facts.message).toMatch(/does not offer WebGPU.*Chrome or Edge/);
  });

  test('no navigator.gpu on an insecure page: says to use https or localhost', async () => {
    const facts = await probeDevice({ isSecureContext: false, gpu: undefined });
    expect(facts).toMatchObject({ ok: false, reason: 'insecure-context' });
    expect(!facts.ok && facts.message).toMatch(/https:\/\/ or from localhost/);
  });

  test('requestAdapter() returning null: no usable adapter', async () => {
    const facts = await probeDevice({ ...secure, gpu: gpuReturning(async () => null) });
    expect(facts).toMatchObject({ ok: false, code: 'WebGPUUnavailable', reason: 'no-adapter' });
    expect(!facts.ok && facts.environment.crossOriginIsolated).toBe(true);
  });

  test('requestAdapter() throwing: reported, not thrown', async () => {
    const facts = await probeDevice({
      ...secure,
      gpu: gpuReturning(async () => {
        throw new Error('device lost');
      }),
    });
    expect(facts).toMatchObject({ ok: false, reason: 'adapter-request-failed' });
    expect(!facts.ok && facts.message).toContain('device lost');
  });

  test('in Node (no navigator.gpu) the default scope reports no WebGPU', async () => {
    const facts = await probeDevice();
    expect(facts.ok).toBe(false);
  });
});
