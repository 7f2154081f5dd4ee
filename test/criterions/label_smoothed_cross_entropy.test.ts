import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs';
import {
  labelSmoothedCrossEntropy,
  labelSmoothedNllLoss,
  reduceMetrics,
} from '../../criterions/label_smoothed_cross_entropy.js';
import { checkGradients, seededValues } from '../nn/grad_check.js';

await tf.setBackend('cpu');

const PAD = 1;
const V = 7;

function logits2d(n: number, seed: number, scale = 3): tf.Tensor2D {
  return tf.tensor2d(seededValues(n * V, seed, scale), [n, V]);
}

const num = (t: tf.Tensor): number => t.dataSync()[0]!;

/** fairseq v0.10.2's formula written out per token in float64. */
function reference(logits: number[][], target: number[], eps: number, pad: number): { loss: number; nll: number } {
  let loss = 0;
  let nll = 0;
  logits.forEach((row, i) => {
    if (target[i] === pad) return;
    const m = Math.max(...row);
    const lse = m + Math.log(row.reduce((a, x) => a + Math.exp(x - m), 0));
    const lp = row.map((x) => x - lse);
    const n = -lp[target[i]!]!;
    const smooth = -lp.reduce((a, x) => a + x, 0);
    nll += n;
    loss += (1 - eps) * n + (eps / row.length) * smooth;
  });
  return { loss, nll };
}

test('matches the fairseq v0.10.2 formula: (1 - eps) * nll + eps / V * smooth, pad ignored', () => {
  const logits = logits2d(6, 1);
  const target = [3, 0, PAD, 6, 2, PAD];
  const { loss, nllLoss } = labelSmoothedNllLoss(logits, tf.tensor1d(target, 'int32'), 0.1, PAD);
  const ref = reference(logits.arraySync(), target, 0.1, PAD);
  assert.ok(Math.abs(num(loss) - ref.loss) < 1e-4, `${num(loss)} vs ${ref.loss}`);
  assert.ok(Math.abs(num(nllLoss) - ref.nll) < 1e-4);
});

test('log-prob input gives the same values as logits', () => {
  const logits = logits2d(5, 2);
  const target = tf.tensor1d([1, 2, 3, 4, 5], 'int32');
  const a = labelSmoothedNllLoss(logits, target, 0.2, PAD);
  const b = labelSmoothedNllLoss(tf.logSoftmax(logits), target, 0.2, PAD, { inputIsLogProbs: true });
  assert.ok(Math.abs(num(a.loss) - num(b.loss)) < 1e-4);
  assert.ok(Math.abs(num(a.nllLoss) - num(b.nllLoss)) < 1e-4);
});

test('smoothing 0 equals plain cross-entropy', () => {
  const logits = logits2d(5, 3);
  const target = tf.tensor1d([0, 2, 4, 6, 3], 'int32');
  const { loss, nllLoss } = labelSmoothedNllLoss(logits, target, 0, PAD);
  const ce = tf.sum(tf.losses.softmaxCrossEntropy(tf.oneHot(target, V), logits, undefined, undefined, tf.Reduction.NONE));
  assert.ok(Math.abs(num(loss) - num(ce)) < 1e-4, `${num(loss)} vs ${num(ce)}`);
  assert.ok(Math.abs(num(loss) - num(nllLoss)) < 1e-6);
});

test('padding leaves the loss unchanged', () => {
  const logits = logits2d(4, 4);
  const target = [2, 5, 0, 3];
  const base = labelSmoothedNllLoss(logits, tf.tensor1d(target, 'int32'), 0.1, PAD);
  // Append pad positions with arbitrary logits.
  const padded = tf.concat([logits, logits2d(3, 5, 10)]);
  const withPad = labelSmoothedNllLoss(padded, tf.tensor1d([...target, PAD, PAD, PAD], 'int32'), 0.1, PAD);
  assert.ok(Math.abs(num(base.loss) - num(withPad.loss)) < 1e-5);
  assert.ok(Math.abs(num(base.nllLoss) - num(withPad.nllLoss)) < 1e-5);
});

test('a padded batch loss equals the sum of per-sentence losses; reduced equals sum of unreduced', () => {
  const sentences = [
    { logits: logits2d(3, 6), target: [4, 5, 2] },
    { logits: logits2d(2, 7), target: [6, 2] },
    { logits: logits2d(4, 8), target: [3, 3, 0, 2] },
  ];
  const T = 4;
  const opts = { labelSmoothing: 0.1, sentenceAvg: false };
  const batchLogits = tf.stack(sentences.map((s) => tf.concat([s.logits, logits2d(T - s.target.length, 9)]))) as tf.Tensor3D;
  const batchTarget = tf.tensor2d(sentences.map((s) => [...s.target, ...Array(T - s.target.length).fill(PAD)]), [3, T], 'int32');
  const batch = labelSmoothedCrossEntropy(batchLogits, batchTarget, opts, PAD);
  assert.equal(batch.ntokens, 9);
  assert.equal(batch.sampleSize, 9);
  assert.equal(batch.nsentences, 3);
  const perSentence = sentences.map((s) =>
    labelSmoothedCrossEntropy(tf.expandDims(s.logits, 0) as tf.Tensor3D, tf.tensor2d([s.target], [1, s.target.length], 'int32'), opts, PAD),
  );
  const sum = perSentence.reduce((a, o) => a + num(o.loss), 0);
  assert.ok(Math.abs(num(batch.loss) - sum) < 1e-4, `${num(batch.loss)} vs ${sum}`);

  const flat = tf.reshape(batchLogits, [3 * T, V]) as tf.Tensor2D;
  const unreduced = labelSmoothedNllLoss(flat, tf.reshape(batchTarget, [3 * T]) as tf.Tensor1D, 0.1, PAD, { reduce: false });
  assert.deepEqual(unreduced.loss.shape, [3 * T]);
  assert.ok(Math.abs(num(tf.sum(unreduced.loss)) - num(batch.loss)) < 1e-4);
  assert.equal(unreduced.loss.dataSync()[3], 0, 'pad position contributes 0');

  assert.equal(labelSmoothedCrossEntropy(batchLogits, batchTarget, { ...opts, sentenceAvg: true }, PAD).sampleSize, 3);
});

test('gradients (hand-written for logits) match central finite differences', () => {
  const logits = tf.variable(logits2d(5, 10, 2));
  const target = tf.tensor1d([3, PAD, 0, 6, 2], 'int32');
  // Weight loss and nll differently so both rows of the fused gradient are exercised.
  const f = () => {
    const { loss, nllLoss } = labelSmoothedNllLoss(logits, target, 0.1, PAD);
    return tf.add(loss, tf.mul(nllLoss, 0.5)) as tf.Scalar;
  };
  checkGradients(f, { logits }, { samples: 35 });
  const lp = tf.variable(tf.logSoftmax(logits2d(4, 11, 2)));
  checkGradients(() => labelSmoothedNllLoss(lp, tf.tensor1d([1, 2, 3, 4], 'int32'), 0.1, PAD, { inputIsLogProbs: true }).loss as tf.Scalar, { lp }, { samples: 28 });
});

test('analytic gradient: softmax - (1 - eps) onehot - eps / V on non-pad rows, zero on pad rows', () => {
  const logits = logits2d(2, 12);
  const target = tf.tensor1d([4, PAD], 'int32');
  const g = tf.grad((x: tf.Tensor) => labelSmoothedNllLoss(x as tf.Tensor2D, target, 0.1, PAD).loss)(logits).arraySync() as number[][];
  const p = tf.softmax(logits).arraySync();
  for (let v = 0; v < V; v++) {
    const want = p[0]![v]! - (v === 4 ? 0.9 : 0) - 0.1 / V;
    assert.ok(Math.abs(g[0]![v]! - want) < 1e-6);
    assert.equal(g[1]![v], 0);
  }
});

test('reduceMetrics sums logs and reports base 2 (loss per sample_size, nll per token)', () => {
  const logits = tf.expandDims(logits2d(3, 13), 0) as tf.Tensor3D;
  const out = labelSmoothedCrossEntropy(logits, tf.tensor2d([[2, 3, PAD]], [1, 3], 'int32'), { labelSmoothing: 0.1, sentenceAvg: false }, PAD);
  const log = { loss: out.loss.dataSync()[0]!, nll_loss: out.nllLoss.dataSync()[0]!, ntokens: out.ntokens, nsentences: out.nsentences, sample_size: out.sampleSize };
  assert.equal(log.ntokens, 2);
  const r = reduceMetrics([log, log]);
  assert.ok(Math.abs(r.loss - (2 * log.loss) / 4 / Math.LN2) < 1e-9);
  assert.ok(Math.abs(r.nll_loss - (2 * log.nll_loss) / 4 / Math.LN2) < 1e-9);
  assert.ok(Math.abs(r.ppl - 2 ** r.nll_loss) < 1e-9);
  assert.deepEqual([r.ntokens, r.nsentences, r.sample_size], [4, 2, 4]);
});

test('no tensors leak from the criterion', () => {
  const logits = tf.expandDims(logits2d(3, 14), 0) as tf.Tensor3D;
  const target = tf.tensor2d([[2, 3, PAD]], [1, 3], 'int32');
  const before = tf.memory().numTensors;
  const out = labelSmoothedCrossEntropy(logits, target, { labelSmoothing: 0.1, sentenceAvg: false }, PAD);
  tf.dispose([out.loss, out.nllLoss]);
  const g = tf.grad((x: tf.Tensor) => labelSmoothedCrossEntropy(x as tf.Tensor3D, target, { labelSmoothing: 0.1, sentenceAvg: false }, PAD, 2).loss)(logits);
  g.dispose();
  assert.equal(tf.memory().numTensors, before);
});
