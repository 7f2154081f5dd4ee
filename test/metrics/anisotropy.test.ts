import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs';
import { initBackend } from '../../src/backend.js';
import { Rng } from '../../src/nn/params.js';
import { anisotropy, selfRoundingRate, tensorAnisotropy } from '../../src/metrics/anisotropy.js';
import { difformerLosses } from '../../criterions/difformer.js';
import { gettextPairs, joinedDictionary, makeBatch, tinyModel } from '../models/difformer_fixtures.js';

await initBackend({ backend: 'wasm' });

/** Eq. 5 literally: mean cosine over ordered pairs i != j. */
function bruteForce(table: Float32Array, v: number, d: number): number {
  const row = (i: number) => table.subarray(i * d, (i + 1) * d);
  const norm = (x: Float32Array) => Math.sqrt(x.reduce((a, y) => a + y * y, 0));
  let sum = 0;
  for (let i = 0; i < v; i++) {
    for (let j = 0; j < v; j++) {
      if (i === j) continue;
      const a = row(i);
      const b = row(j);
      sum += a.reduce((acc, x, k) => acc + x * b[k]!, 0) / (norm(a) * norm(b));
    }
  }
  return sum / (v * (v - 1));
}

test('matches the pairwise definition (Eq. 5)', () => {
  const rng = new Rng(3);
  const t = rng.fillNormal(30 * 7, 0.3, 1);
  assert.ok(Math.abs(anisotropy(t, 30, 7) - bruteForce(t, 30, 7)) < 1e-9);
});

test('an isotropic random table scores about 0, a collapsed one about 1', () => {
  const rng = new Rng(1);
  const [v, d] = [2000, 64];
  const iso = rng.fillNormal(v * d, 0, 1);
  assert.ok(Math.abs(anisotropy(iso, v, d)) < 0.01, `${anisotropy(iso, v, d)}`);
  const dir = rng.fillNormal(d, 0, 1);
  const noise = rng.fillNormal(v * d, 0, 0.05);
  const collapsed = Float32Array.from(noise, (x, i) => x + dir[i % d]!);
  assert.ok(anisotropy(collapsed, v, d) > 0.95, `${anisotropy(collapsed, v, d)}`);
});

test('excluded and all-zero rows are left out; fewer than two rows gives NaN', () => {
  // Rows: 0 zero (padding), 1 and 2 identical, 3 opposite.
  const t = Float32Array.from([0, 0, 1, 0, 1, 0, -1, 0]);
  assert.ok(Math.abs(anisotropy(t, 4, 2) - -1 / 3) < 1e-12); // pairs: (1,2)=1, (1,3)=-1, (2,3)=-1
  assert.equal(anisotropy(t, 4, 2, { exclude: [3] }), 1);
  assert.equal(anisotropy(t, 4, 2, { include: [1, 3] }), -1);
  assert.ok(Number.isNaN(anisotropy(t, 4, 2, { exclude: [1, 2] })));
  const w = tf.tensor2d(t, [4, 2]);
  assert.equal(tensorAnisotropy(w, { exclude: [3] }), 1);
  w.dispose();
  assert.throws(() => anisotropy(t, 3, 2), /expected 3 x 2/);
});

test('self-rounding: a large-norm row takes the dot-product argmax of its neighbours', () => {
  // pad (zero), e1, e2, e3 = 2(e1 + e2): e1·e3 = 2 > e1·e1 = 1, so only e3 reads back as itself
  const t = Float32Array.from([0, 0, 1, 0, 0, 1, 2, 2]);
  assert.equal(selfRoundingRate(t, 4, 2), 1 / 3); // the zero row is not counted
  assert.equal(selfRoundingRate(t, 4, 2, { exclude: [3] }), 0); // e3 still competes
  // equal norms, distinct directions: every row wins its own argmax
  const rng = new Rng(5);
  const g = rng.fillNormal(40 * 16, 0, 1);
  for (let r = 0; r < 40; r++) {
    const row = g.subarray(r * 16, (r + 1) * 16);
    const n = Math.sqrt(row.reduce((a, x) => a + x * x, 0));
    row.forEach((x, k) => (row[k] = x / n));
  }
  assert.equal(selfRoundingRate(g, 40, 16), 1);
  // ties are misses: a duplicated row cannot be told apart from its copy
  assert.equal(selfRoundingRate(Float32Array.from([1, 0, 1, 0]), 2, 2), 0);
  assert.throws(() => selfRoundingRate(t, 3, 2), /expected 3 x 2/);
});

test('anchor vs vlb (paper Table 1): the MSE alone collapses the embeddings, the anchor loss keeps them apart', () => {
  const pairs = gettextPairs(8, 6);
  const dict = joinedDictionary(pairs);
  const batch = makeBatch(dict, pairs);
  // Tokens the target side uses (the diffusion space), specials excluded.
  const targetTokens = new Set(Array.from(batch.target).filter((t) => t >= dict.nspecial));
  const src = tf.tensor2d(batch.srcTokens, [batch.bsz, batch.srcLen], 'int32');
  const tgt = tf.tensor2d(batch.target, [batch.bsz, batch.tgtLen], 'int32');
  const score: Record<string, number> = {};
  for (const mode of ['vlb', 'anchor'] as const) {
    const model = tinyModel(dict, { dropout: 0 });
    const table = model.params.get('encoder.embed_tokens.weight') as tf.Tensor2D;
    const initial = tensorAnisotropy(table, { include: targetTokens });
    assert.ok(Math.abs(initial) < 0.1, `initial ${initial}`);
    const opt = tf.train.adam(3e-3, 0.9, 0.98, 1e-8);
    for (let s = 0; s < 60; s++) {
      const { value, grads } = tf.variableGrads(() => {
        const t = difformerLosses(model, src, tgt, batch.target, { labelSmoothing: 0.1, roundingLoss: false }, true);
        // vlb: latent MSE (+ the length head, which does not touch E); anchor: the full objective.
        return mode === 'vlb' ? (tf.add(t.diffusion, tf.mul(t.length, 0.1)) as tf.Scalar) : t.loss;
      }, model.params.trainableVariables());
      opt.applyGradients(Object.entries(grads).map(([name, tensor]) => ({ name, tensor })));
      tf.dispose([value, ...Object.values(grads)]);
    }
    score[mode] = tensorAnisotropy(table, { include: targetTokens });
    opt.dispose();
    model.dispose();
  }
  assert.ok(score.vlb! > 0.8, `vlb-only anisotropy ${score.vlb}`);
  assert.ok(score.anchor! < 0.4, `anchor anisotropy ${score.anchor}`);
  tf.dispose([src, tgt]);
});
