// The same decode step in plain PyTorch (torch_decode_step.py, f32, random weights), where this
// machine's python3 has torch: what section a's "torch / ours" compares against.
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { ROOT } from '../inputs.ts';
import { log } from '../log.ts';

const TORCH_PYTHON = '/usr/bin/python3';

export interface TorchStepOptions {
  /** Tokens in the cache. */
  context: number;
  steps: number;
  layers: number;
  headRows: number;
  threads: number;
}

export type TorchStep = { msPerStep: number; version: string; threads: number } | 'unavailable';

/** PyTorch's ms per step, or 'unavailable' with the reason in `note`. */
export function torchStep({ context, steps, layers, headRows, threads }: TorchStepOptions): { torch: TorchStep; note: string } {
  let torch: TorchStep = 'unavailable';
  let torchNote = '';
  const probe = spawnSync(TORCH_PYTHON, ['-c', 'import torch'], { encoding: 'utf8' });
  if (probe.status === 0) {
    const args = [join(ROOT, 'tools/bench/torch_decode_step.py'), '--context', String(context), '--steps', String(steps),
      '--layers', String(layers), '--head-rows', String(headRows), '--threads', String(threads)];
    const r = spawnSync(TORCH_PYTHON, args, { encoding: 'utf8', timeout: 600_000 });
    const line = r.stdout.trim().split('\n').at(-1) ?? '';
    try {
      const j = JSON.parse(line) as { ms_per_step: number; torch: string; threads: number };
      torch = { msPerStep: j.ms_per_step, version: j.torch, threads: j.threads };
    } catch {
      torchNote = `torch_decode_step.py failed: ${(r.stderr || line).trim().split('\n').at(-1)}`;
    }
  } else torchNote = `${TORCH_PYTHON} has no torch`;
  log(`  torch: ${torch === 'unavailable' ? `unavailable (${torchNote})` : `${torch.msPerStep} ms/step`}`);
  return { torch, note: torchNote };
}
