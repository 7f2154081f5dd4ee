import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs';
import { initBackend } from '../../src/backend.js';
import { DifformerError } from '../../src/errors.js';
import {
  DifformerCriterion,
  difformerCriterionComponent,
  difformerLosses,
  nonPadRows,
} from '../../criterions/difformer.js';
import { gettextPairs, joinedDictionary, makeBatch, tinyModel } from '../models/difformer_fixtures.js';
import type { Batch } from '../../src/data/language_pair_dataset.js';
import { labelSmoothedNllLoss } from '../../criterions/label_smoothed_cross_entropy.js';

await initBackend({ backend: 'wasm' });

const pairs = gettextPairs(4, 6);
const dict = joinedDictionary(pairs);
const batch = makeBatch(dict, pairs);
const opts = { labelSmoothing: 0.1, roundingLoss: false };

function inputs(b: Batch) {
  return {
    src: tf.tensor2d(b.srcTokens, [b.bsz, b.srcLen], 'int32'),
    tgt: tf.tensor2d(b.target, [b.bsz, b.tgtLen], 'int32'),
  };
}

const read = (s: tf.Scalar) => s.dataSync()[0]!;

test('component: name, flags, official defaults', () => {
  assert.equal(difformerCriterionComponent.name, 'difformer');
  assert.equal(difformerCriterionComponent.options.labelSmoothing?.flag, '--label-smoothing');
  assert.equal(difformerCriterionComponent.options.roundingLoss?.flag, '--rounding-loss');
  assert.deepEqual({ ...difformerCriterionComponent.defaults }, { labelSmoothing: 0.1, roundingLoss: false });
  const c = difformerCriterionComponent.build(opts);
  const model = tinyModel(dict);
  assert.throws(() => c.check({ params: model.params, dispose: () => undefined }), (e: unknown) => e instanceof DifformerError && e.code === 'DIFFORMER_BAD_OPTION');
  model.dispose();
});

test('each term is logged separately, before its factor; loss = diffusion + word_ins + 0.1 length', () => {
  const model = tinyModel(dict);
  const c: DifformerCriterion = new DifformerCriterion(opts);
  c.check(model);
  const out = c.forward(model, batch, true);
  assert.equal(out.sampleSize, 1);
  const quarterKeys = ['ce_sum', 'mse_sum', 'ntokens'].flatMap((k) => [0, 1, 2, 3].map((q) => `${k}_q${q}`));
  assert.deepEqual(Object.keys(out.logging).sort(), ['diffusion', 'length', 'loss', 'nll_loss', 'word_ins', ...quarterKeys].sort());
  const v = Object.fromEntries(Object.entries(out.logging).map(([k, s]) => [k, read(s)]));
  for (const k of ['diffusion', 'length', 'loss', 'nll_loss', 'word_ins']) assert.ok(Number.isFinite(v[k]!) && v[k]! > 0, k);
  assert.equal([0, 1, 2, 3].reduce((a, q) => a + v[`ntokens_q${q}`]!, 0), batch.ntokens, 'every target token falls in one quarter');
  assert.ok(Math.abs(v.loss! - (v.diffusion! + v.word_ins! + 0.1 * v.length!)) < 1e-5);
  assert.equal(read(out.loss), v.loss);
  // The length CE of an untrained head is about ln 256.
  assert.ok(Math.abs(v.length! - Math.log(256)) < 0.5, `length ${v.length}`);
  // reduce: per batch means, base 2, like nat_loss; ppl from nll_loss.
  const r = c.reduce({ values: { loss: 2 * v.loss!, nll_loss: 2 * v.nll_loss!, diffusion: 2 * v.diffusion!, word_ins: 2 * v.word_ins!, length: 2 * v.length! }, sampleSize: 2, ntokens: 10, nsentences: 4 });
  assert.ok(Math.abs(r.loss! - v.loss! / Math.LN2) < 1e-6);
  assert.ok(Math.abs(r.word_ins! - v.word_ins! / Math.LN2) < 1e-6);
  assert.ok(Math.abs(r.ppl! - 2 ** r.nll_loss!) < 1e-9);
  assert.ok(!('diffusion_q0' in r), 'no per-quarter value without its token count');
  tf.dispose([out.loss, ...Object.values(out.logging)]);
  model.dispose();
});

test('per-quarter terms (improved-diffusion mse_q0..q3): one sentence per quarter of t, sums agree with the means', () => {
  const model = tinyModel(dict);
  const T = model.opts.diffusionSteps;
  assert.equal(batch.bsz, 4);
  const t = Int32Array.from([T - 1, 0, Math.floor(T / 2), Math.floor(T / 4)]); // quarters 3, 0, 2, 1
  const { src, tgt } = inputs(batch);
  const noise = tf.randomNormal([batch.bsz, batch.tgtLen, model.latentDim], 0, 1, 'float32', 11) as tf.Tensor3D;
  const terms = difformerLosses(model, src, tgt, batch.target, opts, false, { t, noise, selfCond: false });
  const sq = terms.quarters.sqErr.arraySync();
  const ce = terms.quarters.ce.arraySync();
  const n = terms.quarters.tokens.arraySync();
  const lengths = Array.from(batch.tgtLengths);
  assert.deepEqual(n, [lengths[1], lengths[3], lengths[2], lengths[0]]);
  const d = model.latentDim;
  const total = lengths.reduce((a, x) => a + x, 0);
  assert.ok(Math.abs(sq.reduce((a, x) => a + x, 0) / (total * d) - read(terms.diffusion)) < 1e-5);
  assert.ok(Math.abs(ce.reduce((a, x) => a + x, 0) / total - read(terms.wordIns)) < 1e-4);
  // Each quarter holds exactly its sentence's CE: recompute per sentence from the same forward.
  const perSentence = tf.tidy(() => {
    const out = model.forward(src, tgt, false, { t, noise, selfCond: false });
    const [bsz, l] = out.mask.shape;
    const logits = tf.reshape(model.logits(out.z0hat), [bsz * l, -1]) as tf.Tensor2D;
    const rowLoss = labelSmoothedNllLoss(logits, tf.reshape(tgt, [-1]) as tf.Tensor1D, opts.labelSmoothing, undefined, { reduce: false }).loss;
    return tf.sum(tf.mul(tf.reshape(rowLoss, [bsz, l]), out.mask), 1).arraySync() as number[];
  });
  const bySentence = [perSentence[1]!, perSentence[3]!, perSentence[2]!, perSentence[0]!]; // quarters 0..3
  bySentence.forEach((v, q) => assert.ok(Math.abs(v - ce[q]!) < 1e-3 * Math.max(1, v), `quarter ${q}: ${ce[q]} vs sentence ${v}`));
  // reduce divides each quarter by its own tokens (the logged MSE sums are per-token means over d), in bits.
  const c = new DifformerCriterion(opts);
  const values: Record<string, number> = { loss: 1, nll_loss: 1, diffusion: 1, word_ins: 1, length: 1 };
  for (let q = 0; q < 4; q++) Object.assign(values, { [`mse_sum_q${q}`]: sq[q]! / d, [`ce_sum_q${q}`]: ce[q]!, [`ntokens_q${q}`]: n[q]! });
  const r = c.reduce({ values, sampleSize: 1, ntokens: total, nsentences: 4 });
  assert.ok(Math.abs(r.diffusion_q2! - sq[2]! / (n[2]! * d) / Math.LN2) < 1e-9);
  assert.ok(Math.abs(r.word_ins_q1! - ce[1]! / n[1]! / Math.LN2) < 1e-9);
  tf.dispose([src, tgt, noise, terms.loss, terms.nllLoss, terms.diffusion, terms.wordIns, terms.length, terms.quarters.sqErr, terms.quarters.ce, terms.quarters.tokens]);
  model.dispose();
});

/** nat_loss's smoothed CE by hand: mean over tokens of (1-eps)*nll + eps/V * sum(-log p). */
function manualSmoothedCe(logits: number[][], targets: number[], eps: number): { loss: number; nll: number; natForm: number } {
  let loss = 0;
  let nll = 0;
  let meanLp = 0;
  logits.forEach((row, i) => {
    const m = Math.max(...row);
    const lse = m + Math.log(row.reduce((a, x) => a + Math.exp(x - m), 0));
    const lp = row.map((x) => x - lse);
    const n = -lp[targets[i]!]!;
    nll += n;
    loss += (1 - eps) * n + (eps / row.length) * lp.reduce((a, x) => a - x, 0);
    meanLp += lp.reduce((a, x) => a + x, 0);
  });
  const N = logits.length;
  const V = logits[0]!.length;
  // The nat_loss spelling: (1-eps) * mean NLL - eps * mean over tokens x vocab of log p.
  const natForm = (1 - eps) * (nll / N) - eps * (meanLp / (N * V));
  return { loss: loss / N, nll: nll / N, natForm };
}

test('rounding loss: the CE term is computed on z0·Eᵀ, with the nat_loss label-smoothing formula', () => {
  const model = tinyModel(dict);
  const { src, tgt } = inputs(batch);
  const terms = difformerLosses(model, src, tgt, batch.target, { labelSmoothing: 0.1, roundingLoss: true }, true);
  // z0 = s·E[y] does not depend on the random draws, so the expected value is deterministic.
  const logits = tf.tidy(() => model.logits(model.embedTarget(tgt)).arraySync() as number[][][]);
  const rows: number[][] = [];
  const targets: number[] = [];
  for (let i = 0; i < batch.bsz; i++) {
    for (let j = 0; j < batch.tgtLen; j++) {
      const y = batch.target[i * batch.tgtLen + j]!;
      if (y === dict.padIndex) continue;
      rows.push(logits[i]![j]!);
      targets.push(y);
    }
  }
  const want = manualSmoothedCe(rows, targets, 0.1);
  assert.ok(Math.abs(want.loss - want.natForm) < 1e-9, 'the two spellings of nat_loss smoothing agree');
  assert.ok(Math.abs(read(terms.wordIns) - want.loss) < 1e-4, `${read(terms.wordIns)} vs ${want.loss}`);
  assert.ok(Math.abs(read(terms.nllLoss) - want.nll) < 1e-4);
  // Smoothing 0 is plain cross-entropy.
  const plain = difformerLosses(model, src, tgt, batch.target, { labelSmoothing: 0, roundingLoss: true }, true);
  assert.ok(Math.abs(read(plain.wordIns) - want.nll) < 1e-4);
  // The anchor term (on z0hat) differs from the rounding term.
  const anchor = difformerLosses(model, src, tgt, batch.target, opts, true);
  assert.ok(Math.abs(read(anchor.wordIns) - read(terms.wordIns)) > 1e-3);
  tf.dispose([src, tgt, ...Object.values(terms), ...Object.values(plain), ...Object.values(anchor)]);
  model.dispose();
});

test('diffusion term is the per-element MSE over non-pad positions', () => {
  const model = tinyModel(dict, { dropout: 0 });
  const { src, tgt } = inputs(batch);
  const t = Int32Array.from({ length: batch.bsz }, (_, i) => 100 + 400 * i);
  const noise = tf.randomNormal([batch.bsz, batch.tgtLen, 32], 0, 1, 'float32', 3) as tf.Tensor3D;
  const terms = difformerLosses(model, src, tgt, batch.target, opts, true, { t, noise, selfCond: false });
  const out = model.forward(src, tgt, true, { t, noise, selfCond: false });
  const z0 = out.z0.arraySync();
  const z0hat = out.z0hat.arraySync();
  let sum = 0;
  let n = 0;
  for (let i = 0; i < batch.bsz; i++) {
    for (let j = 0; j < batch.tgtLen; j++) {
      if (batch.target[i * batch.tgtLen + j] === dict.padIndex) continue;
      for (let k = 0; k < 32; k++) sum += (z0hat[i]![j]![k]! - z0[i]![j]![k]!) ** 2;
      n += 32;
    }
  }
  assert.ok(Math.abs(read(terms.diffusion) - sum / n) < 1e-5 * Math.max(1, sum / n));
  tf.dispose([src, tgt, noise, ...Object.values(terms), out.z0, out.z0hat, out.mask, out.lengthLogits, out.lengthTarget]);
  model.dispose();
});

test('padding invariance: extra pad columns on both sides leave every term unchanged', () => {
  const model = tinyModel(dict, { dropout: 0 });
  const wide = makeBatch(dict, pairs, 3);
  const t = Int32Array.from({ length: batch.bsz }, (_, i) => 50 + 600 * i);
  const noiseWide = tf.randomNormal([wide.bsz, wide.tgtLen, 32], 0, 1, 'float32', 11) as tf.Tensor3D;
  const noise = tf.slice(noiseWide, [0, 0, 0], [batch.bsz, batch.tgtLen, 32]) as tf.Tensor3D;
  for (const selfCond of [false, true]) {
    const a = inputs(batch);
    const b = inputs(wide);
    const ta = difformerLosses(model, a.src, a.tgt, batch.target, opts, true, { t, noise, selfCond });
    const tb = difformerLosses(model, b.src, b.tgt, wide.target, opts, true, { t, noise: noiseWide, selfCond });
    for (const k of ['loss', 'nllLoss', 'diffusion', 'wordIns', 'length'] as const) {
      assert.ok(Math.abs(read(ta[k]) - read(tb[k])) < 1e-4 * Math.max(1, read(ta[k])), `${k} (selfCond ${selfCond}): ${read(ta[k])} vs ${read(tb[k])}`);
    }
    tf.dispose([a.src, a.tgt, b.src, b.tgt, ...Object.values(ta), ...Object.values(tb)]);
  }
  tf.dispose([noise, noiseWide]);
  model.dispose();
});

test('nonPadRows lists the flat indices of real target tokens', () => {
  assert.deepEqual(Array.from(nonPadRows(Int32Array.from([0, 5, 2, 1, 0, 2, 1, 1]), 1)), [0, 1, 2, 4, 5]);
});
