import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs';
import { initBackend } from '../../src/backend.js';
import { DifformerError } from '../../src/errors.js';
import { NatLossCriterion, natLossCriterionComponent, natTermLoss, type NatLossModel } from '../../criterions/nat_loss.js';
import type { Criterion } from '../../src/train/types.js';
import { CmlmModel, resolveCmlmOptions, type CmlmOptions } from '../../models/cmlm.js';
import { gettextPairs, joinedDictionary, makeBatch, tinyModel } from '../models/difformer_fixtures.js';
import type { Batch } from '../../src/data/language_pair_dataset.js';

await initBackend({ backend: 'wasm' });

const pairs = gettextPairs(4, 6);
const dict = joinedDictionary(pairs);
const batch = makeBatch(dict, pairs);
const tiny = (o: Partial<CmlmOptions> = {}, seed = 1) => new CmlmModel(resolveCmlmOptions('cmlm_tiny', o), { src: dict, tgt: dict }, seed);
const read = (s: tf.Tensor) => s.dataSync()[0]!;
const readAll = (r: Record<string, tf.Scalar>) => Object.fromEntries(Object.entries(r).map(([k, v]) => [k, read(v)]));

/** fairseq's nat_loss smoothing spelled as in its code: (1-eps) * mean NLL - eps * mean over (N x V) of log p. */
function natForm(logits: number[][], targets: number[], eps: number): { loss: number; nll: number } {
  let nll = 0;
  let sumLp = 0;
  logits.forEach((row, i) => {
    const m = Math.max(...row);
    const lse = m + Math.log(row.reduce((a, x) => a + Math.exp(x - m), 0));
    nll -= row[targets[i]!]! - lse;
    sumLp += row.reduce((a, x) => a + x - lse, 0);
  });
  const n = logits.length;
  return { loss: (1 - eps) * (nll / n) - eps * (sumLp / (n * logits[0]!.length)), nll: nll / n };
}

test('component: name, flag, fairseq default; rejects models without natForward, naming the right criterion', () => {
  assert.equal(natLossCriterionComponent.name, 'nat_loss');
  assert.equal(natLossCriterionComponent.options.labelSmoothing?.flag, '--label-smoothing');
  assert.deepEqual({ ...natLossCriterionComponent.defaults }, { labelSmoothing: 0 });
  const c: Criterion<NatLossModel> = natLossCriterionComponent.build({ labelSmoothing: 0.1 });
  const diff = tinyModel(dict);
  assert.throws(() => c.check(diff), (e: unknown) => e instanceof DifformerError && e.code === 'DIFFORMER_BAD_OPTION' && /--criterion difformer/.test(e.message));
  diff.dispose();
  const cmlm = tiny();
  c.check(cmlm);
  cmlm.dispose();
});

test('smoothing: natTermLoss equals (1-eps) mean NLL - eps mean log p; eps 0 is plain CE; empty selection is 0', () => {
  const logitsArr = [
    [0.5, -1, 2, 0.1, 0],
    [3, 0, -2, 1, 1],
    [-0.5, 0.5, 0.2, 0.3, -4],
  ];
  const targets = [2, 0, 4];
  const logits = tf.tensor2d(logitsArr);
  const tgt = tf.tensor1d(targets, 'int32');
  for (const eps of [0, 0.1, 0.3]) {
    const r = natTermLoss(logits, tgt, eps);
    const want = natForm(logitsArr, targets, eps);
    assert.ok(Math.abs(read(r.loss) - want.loss) < 1e-5, `eps ${eps}: ${read(r.loss)} vs ${want.loss}`);
    assert.ok(Math.abs(read(r.nllLoss) - want.nll) < 1e-5);
    if (eps === 0) assert.ok(Math.abs(read(r.loss) - read(r.nllLoss)) < 1e-7);
    tf.dispose([r.loss, r.nllLoss]);
  }
  const empty = natTermLoss(null, null, 0.1);
  assert.deepEqual([read(empty.loss), read(empty.nllLoss)], [0, 0]);
  tf.dispose([logits, tgt, empty.loss, empty.nllLoss]);
});

test('word_ins covers exactly the positions whose decoder input is <unk>', () => {
  const model = tiny({ dropout: 0 });
  const crit = new NatLossCriterion({ labelSmoothing: 0.1 });
  const prev = model.noisedTarget(batch);
  // Expected: smoothed CE of the full decoder output, picked at the <unk> positions by hand.
  const logits = tf.tidy(() => {
    const enc = model.encode(tf.tensor2d(batch.srcTokens, [batch.bsz, batch.srcLen], 'int32'), false);
    const h = model.decodeFeatures(enc, tf.tensor2d(prev, [batch.bsz, batch.tgtLen], 'int32'), false);
    return model.outputLogits(tf.reshape(h, [batch.bsz * batch.tgtLen, -1])).arraySync() as number[][];
  });
  const rows = logits.filter((_, i) => prev[i] === dict.unkIndex);
  const targets = Array.from(batch.target).filter((_, i) => prev[i] === dict.unkIndex);
  assert.ok(rows.length >= batch.bsz);
  const want = natForm(rows, targets, 0.1);
  // A model whose noise draw is fixed to `prev` (and, below, to other decoder inputs).
  const fixed = (p: Int32Array, b?: Batch) => ({ params: model.params, dispose: () => undefined, natForward: (x: Batch, t: boolean) => model.natForward(b ?? x, t, p) });
  const got = readAll(crit.losses(fixed(prev), batch, false));
  assert.ok(Math.abs(got.word_ins! - want.loss) < 1e-4, `${got.word_ins} vs ${want.loss}`);
  assert.ok(Math.abs(got.nll_loss! - want.nll) < 1e-4);
  // Targets at unmasked positions do not matter.
  const other: Batch = { ...batch, target: Int32Array.from(batch.target, (t, i) => (prev[i] === dict.unkIndex || t === dict.padIndex || t === dict.bosIndex || t === dict.eosIndex ? t : 4)) };
  const got2 = readAll(crit.losses(fixed(prev, other), other, false));
  assert.ok(Math.abs(got2.word_ins! - got.word_ins!) < 1e-6);
  // Nothing masked: the word term is 0.
  const none = readAll(crit.losses(fixed(batch.target), batch, false));
  assert.equal(none.word_ins, 0);
  assert.equal(none.nll_loss, 0);
  model.dispose();
});

test('terms are logged before their factor; loss = word_ins + 0.1 length; sampleSize 1; reduce in base 2, ppl = 2^loss', () => {
  const model = tiny();
  const crit: NatLossCriterion = new NatLossCriterion({ labelSmoothing: 0.1 });
  crit.check(model);
  const out = crit.forward(model, batch, true);
  assert.equal(out.sampleSize, 1);
  assert.deepEqual(Object.keys(out.logging), ['loss', 'nll_loss', 'word_ins', 'length']);
  const v = readAll(out.logging);
  assert.ok(Math.abs(v.loss! - (v.word_ins! + 0.1 * v.length!)) < 1e-5);
  assert.equal(read(out.loss), v.loss);
  assert.ok(v.nll_loss! > 0, 'nll_loss is the word term\'s NLL');
  assert.ok(Math.abs(v.length! - Math.log(256)) < 0.5, `untrained length CE ~ ln 256, got ${v.length}`);
  const r = crit.reduce({ values: { loss: 2 * v.loss!, nll_loss: 2 * v.nll_loss!, word_ins: 2 * v.word_ins!, length: 2 * v.length! }, sampleSize: 2, ntokens: 30, nsentences: 8 });
  for (const k of ['loss', 'nll_loss', 'word_ins', 'length']) assert.ok(Math.abs(r[k]! - v[k]! / Math.LN2) < 1e-6, k);
  assert.ok(Math.abs(r.ppl! - 2 ** r.loss!) < 1e-9);
  // The length factor is the model's --length-loss-factor.
  const heavy = tiny({ lengthLossFactor: 1 });
  const h = readAll(crit.forward(heavy, batch, true).logging);
  assert.ok(Math.abs(h.loss! - (h.word_ins! + h.length!)) < 1e-5);
  heavy.dispose();
  model.dispose();
});

test('padding invariance: extra pad columns on both sides leave every term unchanged', () => {
  const crit = new NatLossCriterion({ labelSmoothing: 0.1 });
  const wide = makeBatch(dict, pairs, 3);
  // Same seed: the noise draws depend only on the real tokens, so both see the same masks.
  const a = tiny({ dropout: 0 }, 9);
  const b = tiny({ dropout: 0 }, 9);
  const ta = readAll(crit.losses(a, batch, true));
  const tb = readAll(crit.losses(b, wide, true));
  for (const k of Object.keys(ta)) assert.ok(Math.abs(ta[k]! - tb[k]!) < 1e-4 * Math.max(1, ta[k]!), `${k}: ${ta[k]} vs ${tb[k]}`);
  a.dispose();
  b.dispose();
});

test('gradients reach every parameter and are finite; no tensors leak', () => {
  const model = tiny();
  const crit = new NatLossCriterion({ labelSmoothing: 0.1 });
  const vars = model.params.trainableVariables();
  const before = tf.memory().numTensors;
  const { value, grads } = tf.variableGrads(() => crit.forward(model, batch, true).loss, vars);
  assert.equal(Object.keys(grads).length, vars.length);
  for (const g of Object.values(grads)) assert.ok(g.dataSync().every(Number.isFinite));
  tf.dispose([value, ...Object.values(grads)]);
  assert.equal(tf.memory().numTensors, before);
  model.dispose();
});
