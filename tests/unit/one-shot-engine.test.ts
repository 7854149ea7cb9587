// The CLI's memory-saving engine: sessions opened from files (weights mapped by onnxruntime-node,
// the files removed once open) and oneShot (the LM's session released before the decoder's is
// opened). Same tokens and pixels as the plain engine; a second image is refused; nothing is left
// in the temp folder.
import { readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { describe, expect, it } from 'vitest';
import * as ort from 'onnxruntime-node';
import { createCpuEngine } from '../../src/core/engine/create-cpu.ts';
import type { OrtModule } from '../../src/core/base/ort.ts';
import type { ModelFiles } from '../../src/core/runtime/model-files.ts';
import { tempModelFiles } from '../../src/cli/model-files.ts';
import { loadFixtureModel } from '../helpers/fixture-model.ts';

const sessionFolders = () => readdirSync(tmpdir()).filter((n) => n.startsWith('simplear-session-')).sort();

describe('one-shot engine with sessions from files', () => {
  it('makes the plain engine’s image, then refuses another, leaving no files', async () => {
    const before = sessionFolders();
    let staged = 0;
    const files: ModelFiles = async (m) => {
      staged++;
      expect(m.externalData.length).toBeGreaterThan(0);
      return tempModelFiles(m);
    };
    const request = { prompt: 'a blue bird', size: 64, temperature: 0.8, seed: 11 };
    const plain = await createCpuEngine(ort as unknown as OrtModule, await loadFixtureModel(), { maxLatentSide: 4 });
    const expected = await plain.generate(request);
    await plain.dispose();

    const engine = await createCpuEngine(ort as unknown as OrtModule, await loadFixtureModel(), { maxLatentSide: 4, oneShot: true, files });
    expect(staged).toBe(1); // the LM; the decoder's session opens after the tokens
    const r = await engine.generate(request);
    expect(staged).toBe(2);
    expect(Array.from(r.codes)).toEqual(Array.from(expected.codes));
    expect(Buffer.from(r.rgba).equals(Buffer.from(expected.rgba))).toBe(true);
    expect(() => engine.generate(request)).toThrow(/one image only/);
    await engine.dispose();
    expect(sessionFolders()).toEqual(before);
  });
});
