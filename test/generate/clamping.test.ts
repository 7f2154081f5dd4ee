/**
 * --clamping-mode l2 (Diffusion-LM's nearest-embedding rounding) against Difformer's argmax
 * clamping, and the Diff-LM architectures registered on the difformer model.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import * as tf from '@tensorflow/tfjs';
import { initBackend } from '../../src/backend.js';
import { buildDiffusionGenerator, diffusionGenerationDefaults, diffusionGenerationOptionTable, nearestEmbeddingClamp } from '../../src/generate/diffusion_sampler.js';
import { registerBuiltins } from '../../src/cli/builtins.js';
import { getArchitecture } from '../../src/registry.js';
import { diffLmArchitectures } from '../../models/diff_lm.js';
import { gettextPairs, joinedDictionary, makeBatch, tinyModel } from '../models/difformer_fixtures.js';
import type { DifformerOptions } from '../../models/difformer_options.js';

await initBackend({ backend: 'cpu' });

test('l2 clamping returns exact embedding rows, and differs from argmax when norms differ', () => {
  // row 0 has a large norm: it wins the dot product for z = [1.2, 0.9] though row 1 is nearer
  const table = tf.tensor2d([
    [10, 0],
    [1, 1],
    [0, -1],
  ]);
  const z = tf.tensor3d([[[1.2, 0.9], [0.1, -2], [9, 0.5]]]); // [1, 3, 2]
  const { tokens, clamped } = nearestEmbeddingClamp(z, table);
  assert.deepEqual(tokens.arraySync(), [[1, 2, 0]]);
  assert.deepEqual(clamped.arraySync(), [[[1, 1], [0, -1], [10, 0]]]);
  const argmax = tf.tidy(() => tf.argMax(tf.einsum('bld,vd->blv', z, table), 2));
  assert.deepEqual(argmax.arraySync(), [[0, 2, 0]]);
  tf.dispose([table, z, tokens, clamped, argmax]);
  assert.equal(diffusionGenerationDefaults.clampingMode, 'argmax');
  assert.equal(diffusionGenerationOptionTable.clampingMode?.flag, '--clamping-mode');
});

test('the sampler with --clamping --clamping-mode l2 feeds exact s·E rows to the next step; no tensors leak', () => {
  const pairs = gettextPairs(4, 5);
  const dict = joinedDictionary(pairs);
  const batch = makeBatch(dict, pairs);
  const model = tinyModel(dict, diffLmArchitectures.diff_lm_tiny);
  const prevs: number[][] = []; // every position's previous z0hat
  const denoise = model.denoise.bind(model);
  model.denoise = (zt, t, mask, enc, prev, training) => {
    if (prev) prevs.push(...(prev.arraySync() as number[][][]).flat());
    return denoise(zt, t, mask, enc, prev, training);
  };
  model.predictLengths = () => Int32Array.from(batch.tgtLengths); // an untrained length head is slow to decode
  const rows = tf.tidy(() => model.embedTarget(tf.range(0, dict.size, 1, 'int32').expandDims(0) as tf.Tensor2D).squeeze([0]).arraySync() as number[][]);
  const before = tf.memory().numTensors;
  const gen = buildDiffusionGenerator(model, { tgtDict: dict, options: { ...diffusionGenerationDefaults, decodingSteps: 3, clamping: true, clampingMode: 'l2' }, seed: 1 });
  gen.generate(batch);
  assert.equal(tf.memory().numTensors, before, 'no tensors left behind');
  assert.ok(prevs.length > 0);
  for (const v of prevs) assert.ok(rows.some((r) => r.every((x, i) => x === v[i])), 'each clamped position is a row of s·E');
  model.dispose();
});

test('diff_lm architectures: Difformer with embed norm, self-conditioning and the noise factor off', () => {
  registerBuiltins();
  for (const arch of ['diff_lm', 'diff_lm_iwslt_de_en', 'diff_lm_tiny']) {
    const { model, preset } = getArchitecture<DifformerOptions>(arch);
    assert.equal(model.name, 'difformer');
    assert.equal(preset.embedNorm, false);
    assert.equal(preset.selfCond, false);
    assert.equal(preset.rescalingFactor, 1);
    assert.equal(preset.noiseSchedule, 'sqrt');
  }
  assert.equal(getArchitecture<DifformerOptions>('diff_lm_tiny').preset.latentDim, 32);
});
