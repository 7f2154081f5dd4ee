import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs';
import { initLengthHead, lengthClass, lengthClassFits, lengthFromClass, lengthLogits, lengthTargets, predictLengths } from '../../src/nn/length_head.js';
import { ParamStore } from '../../src/nn/params.js';

await tf.setBackend('cpu');

test('length classes: tgt - src + 128 clamped to [0, 255], or the target length itself', () => {
  assert.equal(lengthClass(7, 5, true), 130);
  assert.equal(lengthClass(3, 9, true), 122);
  assert.equal(lengthClass(400, 2, true), 255);
  assert.equal(lengthClass(2, 300, true), 0);
  assert.equal(lengthClass(7, 5, false), 7);
  assert.equal(lengthFromClass(130, 5, true), 7);
  assert.equal(lengthFromClass(7, 5, false), 7);
  // what the clamp hides: whether the head can name the length at all
  assert.ok(lengthClassFits(7, 5, true) && lengthClassFits(2, 129, true) && !lengthClassFits(2, 131, true));
  assert.ok(lengthClassFits(255, 2, false) && !lengthClassFits(256, 2, false) && !lengthClassFits(300, 2, true));
});

test('lengthTargets (tensors) agree with lengthClass (numbers), clamping included', () => {
  // source lengths 3, 1, 2 (1 = pad in the padding mask); target lengths 2, 4, 1
  const srcPad = tf.tensor2d([[0, 0, 0], [0, 1, 1], [0, 0, 1]]);
  const tgtMask = tf.tensor2d([[1, 1, 0, 0], [1, 1, 1, 1], [1, 0, 0, 0]]);
  for (const offset of [true, false]) {
    const got = lengthTargets(srcPad as tf.Tensor2D, tgtMask as tf.Tensor2D, offset);
    assert.equal(got.dtype, 'int32');
    assert.deepEqual(Array.from(got.dataSync()), [[2, 3], [4, 1], [1, 2]].map(([t, s]) => lengthClass(t!, s!, offset)));
    got.dispose();
  }
  tf.dispose([srcPad, tgtMask]);
});

test('the head pools over real source positions only; predictLengths maps the argmax back', () => {
  const store = new ParamStore(1);
  initLengthHead(store, 2, false);
  // W_len row c = [c == 130 ? 1 : 0, c == 7 ? 1 : 0]: pooled feature 0 picks class 130, feature 1 class 7
  const w = new Float32Array(256 * 2);
  w[130 * 2] = 1;
  w[7 * 2 + 1] = 1;
  const wt = tf.tensor2d(w, [256, 2]);
  store.get('decoder.embed_length.weight').assign(wt);
  wt.dispose();
  // row 0: two real positions [1, 0] and a pad whose huge value must not count; row 1: one real [0, 1]
  const encOut = { out: tf.tensor3d([[[1, 0], [1, 0], [0, 99]], [[0, 1], [5, 5], [5, 5]]]), paddingMask: tf.tensor2d([[0, 0, 1], [0, 1, 1]]) };
  const logits = lengthLogits(store, encOut, false);
  assert.deepEqual(Array.from(tf.argMax(logits, 1).dataSync()), [130, 7]);
  // offset: class 130 over a 2-token source means length 4; no offset: class 7 is length 7
  assert.deepEqual(Array.from(predictLengths(store, encOut, false, true)), [4, 7 - 128 + 1]);
  assert.deepEqual(Array.from(predictLengths(store, encOut, false, false)), [130, 7]);
  tf.dispose([logits, encOut.out, encOut.paddingMask]);
  store.dispose();
});
