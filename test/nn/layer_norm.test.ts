import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs';
import { initLayerNorm, layerNorm, layerNormWith } from '../../src/nn/layer_norm.js';
import { ParamStore } from '../../src/nn/params.js';
import { checkGradients, seededValues } from './grad_check.js';

await tf.setBackend('cpu');

test('layer norm matches the hand formula (biased variance, eps inside the sqrt)', () => {
  const rows = [
    [1, 2, 3, 4],
    [-3, 0.5, 10, 2],
  ];
  const w = [0.5, 1, -2, 3];
  const b = [0.1, 0, 0.2, -1];
  const eps = 1e-5;
  const x = tf.tensor2d(rows);
  const y = layerNormWith(x, tf.tensor1d(w), tf.tensor1d(b), eps).arraySync();
  rows.forEach((r, i) => {
    const mean = r.reduce((a, v) => a + v, 0) / r.length;
    const variance = r.reduce((a, v) => a + (v - mean) ** 2, 0) / r.length;
    r.forEach((v, j) => {
      const want = ((v - mean) / Math.sqrt(variance + eps)) * w[j]! + b[j]!;
      assert.ok(Math.abs(y[i]![j]! - want) < 1e-5, `(${i},${j}) ${y[i]![j]} vs ${want}`);
    });
  });
});

test('layer norm over the last axis of a 3-D tensor; default params are identity affine', () => {
  const store = new ParamStore(1);
  initLayerNorm(store, 'ln', 6);
  assert.deepEqual(store.names(), ['ln.weight', 'ln.bias']);
  const x = tf.tensor3d(seededValues(2 * 3 * 6, 4, 3), [2, 3, 6]);
  const y = layerNorm(store, 'ln', x);
  const mean = tf.mean(y, -1).dataSync();
  const variance = tf.moments(y, -1).variance.dataSync();
  mean.forEach((m) => assert.ok(Math.abs(m) < 1e-5));
  variance.forEach((v) => assert.ok(Math.abs(v - 1) < 1e-3));
  store.dispose();
});

test('layer norm without affine parameters', () => {
  const store = new ParamStore(1);
  initLayerNorm(store, 'ln', 4, { affine: false });
  assert.deepEqual(store.names(), []);
  const y = layerNorm(store, 'ln', tf.tensor2d([[1, 2, 3, 4]])).dataSync();
  assert.ok(Math.abs(y[0]! + 1.3416355) < 1e-4);
});

test('layer norm gradients match central finite differences', () => {
  const store = new ParamStore(2);
  initLayerNorm(store, 'ln', 5);
  // Non-trivial affine parameters so their gradients are exercised away from 1/0.
  store.assign({ 'ln.weight': tf.tensor1d([0.5, 1.5, -1, 2, 0.3]), 'ln.bias': tf.tensor1d([0.1, -0.2, 0.3, 0, 1]) });
  const x = tf.variable(tf.tensor2d(seededValues(3 * 5, 9, 2), [3, 5]));
  const r = tf.tensor2d(seededValues(3 * 5, 10), [3, 5]);
  const f = () => tf.sum(tf.mul(layerNorm(store, 'ln', x), r)) as tf.Scalar;
  checkGradients(f, { x, weight: store.get('ln.weight'), bias: store.get('ln.bias') }, { samples: 15 });
  store.dispose();
});
