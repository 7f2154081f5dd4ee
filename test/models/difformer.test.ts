import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs';
import { initBackend } from '../../src/backend.js';
import { alphaBarFn, vpRescaledAlphaBar } from '../../src/diffusion/schedule.js';
import { DifformerError } from '../../src/errors.js';
import {
  DifformerModel,
  difformerArchitectures,
  difformerModelComponent,
  resolveDifformerOptions,
} from '../../models/difformer.js';
import { lengthClass } from '../../src/nn/length_head.js';
import { difformerLosses } from '../../criterions/difformer.js';
import { gettextPairs, joinedDictionary, makeBatch, tinyModel, trainSteps } from './difformer_fixtures.js';

await initBackend({ backend: 'wasm' });

const pairs = gettextPairs(4, 6);
const dict = joinedDictionary(pairs);
const batch = makeBatch(dict, pairs);
const tensors = () => ({
  src: tf.tensor2d(batch.srcTokens, [batch.bsz, batch.srcLen], 'int32'),
  tgt: tf.tensor2d(batch.target, [batch.bsz, batch.tgtLen], 'int32'),
});
const crit = { labelSmoothing: 0.1, roundingLoss: false };

test('architectures: official widths, 6+6 layers, latent 128, official-script defaults', () => {
  const a = resolveDifformerOptions('difformer_iwslt_de_en');
  assert.equal(a.modelDim, 512);
  assert.equal(a.encoderFfnEmbedDim, 1024);
  assert.equal(a.decoderAttentionHeads, 4);
  assert.equal(a.encoderLayers, 6);
  assert.equal(a.latentDim, 128);
  assert.equal(resolveDifformerOptions('difformer_base').modelDim, 768);
  assert.equal(resolveDifformerOptions('difformer').decoderFfnEmbedDim, 2048);
  for (const k of ['selfCond', 'embedNorm', 'embedNormAffine', 'rescaleTimesteps', 'predLengthOffset', 'shareAllEmbeddings', 'applyBertInit'] as const) {
    assert.equal(a[k], true, k);
  }
  assert.equal(a.rescalingFactor, 4);
  assert.equal(a.noiseSchedule, 'sqrt');
  assert.equal(a.diffusionSteps, 2000);
  assert.ok('difformer_tiny' in difformerArchitectures);
  assert.throws(() => resolveDifformerOptions('difformer_huge'), (e: unknown) => e instanceof DifformerError && e.code === 'DIFFORMER_UNKNOWN_NAME');
  // Every option is declared (flag or null) in the table.
  assert.deepEqual(Object.keys(difformerModelComponent.options).sort(), Object.keys(difformerModelComponent.defaults).sort());
});

test('shapes: encoder [B, S, C], length [B, 256], z0/z0hat [B, L, D], logits [B, L, V]', () => {
  const model = tinyModel(dict);
  const { src, tgt } = tensors();
  const enc = model.encode(src, false);
  assert.deepEqual(enc.out.shape, [batch.bsz, batch.srcLen, 64]);
  const ll = model.lengthLogits(enc);
  assert.deepEqual(ll.shape, [batch.bsz, 256]);
  const out = model.forward(src, tgt, true);
  assert.deepEqual(out.z0.shape, [batch.bsz, batch.tgtLen, 32]);
  assert.deepEqual(out.z0hat.shape, [batch.bsz, batch.tgtLen, 32]);
  assert.deepEqual(out.mask.shape, [batch.bsz, batch.tgtLen]);
  assert.equal(out.t.length, batch.bsz);
  assert.ok(out.t.every((t) => t >= 0 && t < 2000));
  const logits = model.logits(out.z0hat);
  assert.deepEqual(logits.shape, [batch.bsz, batch.tgtLen, dict.size]);
  assert.ok(logits.dataSync().every(Number.isFinite));
  tf.dispose([src, tgt, enc.out, enc.paddingMask, ll, out.z0, out.z0hat, out.mask, out.lengthLogits, out.lengthTarget, logits]);
  model.dispose();
});

test('parameter names follow the official state dict; shared table; bias-free projections', () => {
  const model = tinyModel(dict, { encoderLayers: 1, decoderLayers: 1 });
  const names = model.params.names();
  for (const n of [
    'encoder.embed_tokens.weight',
    'encoder.project_in_dim.weight',
    'encoder.embed_positions.weight',
    'encoder.layers.0.self_attn.q_proj.weight',
    'decoder.project_in_dim.weight',
    'decoder.project_out_dim.weight',
    'decoder.embed_positions.weight',
    'decoder.layers.0.encoder_attn.k_proj.weight',
    'decoder.embed_length.weight',
    'decoder.embed_norm.weight',
    'decoder.embed_norm.bias',
    'decoder.self_cond_proj.0.weight',
    'decoder.self_cond_proj.2.bias',
    'decoder.embed_time.0.weight',
    'decoder.embed_time.2.weight',
  ]) {
    assert.ok(names.includes(n), n);
  }
  for (const n of ['encoder.project_in_dim.bias', 'decoder.project_in_dim.bias', 'decoder.project_out_dim.bias', 'decoder.embed_tokens.weight']) {
    assert.ok(!names.includes(n), `${n} should not be a separate parameter`);
  }
  assert.deepEqual(model.params.aliases(), {
    'decoder.embed_tokens.weight': 'encoder.embed_tokens.weight',
    'decoder.output_projection.weight': 'encoder.embed_tokens.weight',
  });
  const p = (n: string) => model.params.get(n).shape;
  assert.deepEqual(p('encoder.embed_tokens.weight'), [dict.size, 32]);
  assert.deepEqual(p('encoder.project_in_dim.weight'), [64, 32]);
  assert.deepEqual(p('decoder.project_out_dim.weight'), [32, 64]);
  assert.deepEqual(p('decoder.self_cond_proj.0.weight'), [64, 128]);
  assert.deepEqual(p('decoder.embed_time.0.weight'), [256, 64]);
  assert.deepEqual(p('decoder.embed_length.weight'), [256, 64]);
  // BERT init of the shared table: N(0, 0.02) with the pad row zero.
  const e = model.params.get('encoder.embed_tokens.weight').arraySync() as number[][];
  assert.ok(e[dict.padIndex]!.every((v) => v === 0));
  const flat = e.flat();
  const std = Math.sqrt(flat.reduce((a, v) => a + v * v, 0) / flat.length);
  assert.ok(Math.abs(std - 0.02) < 0.004, `std ${std}`);
  model.dispose();

  const before = tinyModel(dict, { embedNormBeforeProj: true, selfCondBeforeProj: true, shareProjectInDim: true, embedNormAffine: false });
  assert.deepEqual(before.params.get('decoder.self_cond_proj.0.weight').shape, [32, 64]);
  assert.ok(!before.params.has('decoder.embed_norm.weight'));
  assert.equal(before.params.aliases()['decoder.project_in_dim.weight'], 'encoder.project_in_dim.weight');
  before.dispose();
  const same = tinyModel(dict, { latentDim: 64 });
  assert.ok(!same.params.has('decoder.project_in_dim.weight'), 'latent == model: identity projections');
  same.dispose();
});

test('the forward computes the length classes tgt - src + 128 from the masks', () => {
  const model = tinyModel(dict);
  const { src, tgt } = tensors();
  const out = model.forward(src, tgt, false);
  const expected = Array.from(batch.tgtLengths, (t, i) => lengthClass(t, batch.srcLengths[i]!, true));
  assert.deepEqual(Array.from(out.lengthTarget.dataSync()), expected);
  tf.dispose([src, tgt, out.z0, out.z0hat, out.mask, out.lengthLogits, out.lengthTarget]);
  model.dispose();
});

test('q_sample: mean sqrt(ab_t) z0 and std F sqrt(1 - ab_t), per sentence', () => {
  const model = tinyModel(dict, { rescalingFactor: 4 });
  const t = Int32Array.from([0, 500, 1000, 1999]);
  const [b, l, d] = [4, 128, 32];
  const z0 = tf.ones([b, l, d]) as tf.Tensor3D;
  const zt = model.qSample(z0, t);
  const rows = zt.arraySync() as number[][][];
  rows.forEach((row, i) => {
    const v = row.flat();
    const mean = v.reduce((a, x) => a + x, 0) / v.length;
    const std = Math.sqrt(v.reduce((a, x) => a + (x - mean) ** 2, 0) / v.length);
    const ab = model.diffusion.alphasCumprod[t[i]!]!;
    assert.ok(Math.abs(mean - Math.sqrt(ab)) < 0.05 * 4 * Math.sqrt(1 - ab) + 1e-3, `t=${t[i]} mean ${mean}`);
    assert.ok(Math.abs(std / (4 * Math.sqrt(1 - ab)) - 1) < 0.05, `t=${t[i]} std ${std}`);
  });
  assert.ok(Math.abs(model.diffusion.alphasCumprod[1000]! - 0.295423) < 1e-6);
  tf.dispose([z0, zt]);
  model.dispose();
  // --vp-rf: the schedule is rescaled by F and the noise is not also multiplied by F.
  const vp = tinyModel(dict, { vpRf: true, rescalingFactor: 4 });
  assert.equal(vp.noiseScale, 1);
  const f = vpRescaledAlphaBar(alphaBarFn('sqrt'), 4);
  assert.ok(Math.abs(vp.diffusion.alphasCumprod[1000]! - f(1001 / 2000) / f(0)) < 1e-9);
  vp.dispose();
});

for (const selfCond of [false, true]) {
  test(`gradients reach every parameter, finite and nonzero (${selfCond ? 'self-conditioning' : 'plain'} path)`, () => {
    const model = tinyModel(dict);
    const { src, tgt } = tensors();
    const vars = model.params.trainableVariables();
    const names = model.params.names();
    const { value, grads } = tf.variableGrads(
      () => difformerLosses(model, src, tgt, batch.target, crit, true, { selfCond }).loss,
      vars,
    );
    assert.ok(Number.isFinite(value.dataSync()[0]!));
    const byVar = new Map(vars.map((v, i) => [v.name, names[i]!]));
    assert.equal(Object.keys(grads).length, vars.length, 'every variable is connected to the loss');
    for (const [k, g] of Object.entries(grads)) {
      const data = g.dataSync();
      assert.ok(data.every(Number.isFinite), `${byVar.get(k)} has non-finite gradients`);
      assert.ok(data.some((v) => v !== 0), `${byVar.get(k)} has an all-zero gradient`);
    }
    tf.dispose([value, src, tgt, ...Object.values(grads)]);
    model.dispose();
  });
}

test('the self-conditioning first pass adds no gradient: same gradient as feeding its output as a constant', () => {
  const model = tinyModel(dict, { dropout: 0 });
  const { src, tgt } = tensors();
  const t = Int32Array.from([3, 700, 1500, 1999]);
  const noise = tf.randomNormal([batch.bsz, batch.tgtLen, 32], 0, 1, 'float32', 5) as tf.Tensor3D;
  const w = model.params.get('decoder.layers.0.fc1.weight');
  const gradOf = (loss: () => tf.Scalar) => {
    const { value, grads } = tf.variableGrads(loss, [w]);
    value.dispose();
    return Object.values(grads)[0]!;
  };
  const a = gradOf(() => tf.sum(model.forward(src, tgt, true, { t, noise, selfCond: true }).z0hat));
  // Manual version: first pass computed outside the tape, then passed as a constant.
  const first = tf.tidy(() => {
    const enc = model.encode(src, false);
    const z0 = model.embedTarget(tgt);
    const zt = model.qSample(z0, t, noise);
    const mask = tf.cast(tf.notEqual(tgt, dict.padIndex), 'float32') as tf.Tensor2D;
    return model.denoise(zt, model.modelTimesteps(t), mask, enc, null, false);
  });
  const b = gradOf(() =>
    tf.tidy(() => {
      const enc = model.encode(src, true);
      const zt = model.qSample(model.embedTarget(tgt), t, noise);
      const mask = tf.cast(tf.notEqual(tgt, dict.padIndex), 'float32') as tf.Tensor2D;
      return tf.sum(model.denoise(zt, model.modelTimesteps(t), mask, enc, first, true));
    }),
  );
  const diff = tf.tidy(() => tf.max(tf.abs(tf.sub(a, b))).dataSync()[0]!);
  const scale = tf.tidy(() => tf.max(tf.abs(b)).dataSync()[0]!);
  assert.ok(diff <= 1e-4 * scale + 1e-7, `max diff ${diff} (scale ${scale})`);
  tf.dispose([a, b, first, noise, src, tgt]);
  model.dispose();
});

test('reproducible from the RNG state: same state, same loss', () => {
  const model = tinyModel(dict);
  const { src, tgt } = tensors();
  const state = model.params.rng.getState();
  const l1 = tf.tidy(() => difformerLosses(model, src, tgt, batch.target, crit, true).loss.dataSync()[0]!);
  const l2 = tf.tidy(() => difformerLosses(model, src, tgt, batch.target, crit, true).loss.dataSync()[0]!);
  model.params.rng.setState(state);
  const l3 = tf.tidy(() => difformerLosses(model, src, tgt, batch.target, crit, true).loss.dataSync()[0]!);
  assert.notEqual(l1, l2);
  assert.equal(l1, l3);
  tf.dispose([src, tgt]);
  model.dispose();
});

test('share-all-embeddings needs a joined dictionary; separate tables otherwise', () => {
  const other = joinedDictionary(gettextPairs(2, 4));
  const opts = resolveDifformerOptions('difformer_tiny');
  assert.throws(() => new DifformerModel(opts, { src: other, tgt: dict }), (e: unknown) => e instanceof DifformerError && /--joined-dictionary/.test(e.message));
  const m = new DifformerModel({ ...opts, shareAllEmbeddings: false }, { src: other, tgt: dict });
  assert.deepEqual(m.params.get('decoder.embed_tokens.weight').shape, [dict.size, 32]);
  assert.deepEqual(m.params.get('encoder.embed_tokens.weight').shape, [other.size, 32]);
  m.dispose();
});

test('tensor count is flat across training steps', () => {
  const model = tinyModel(dict);
  trainSteps(model, batch, crit, 2);
  const before = tf.memory().numTensors;
  trainSteps(model, batch, crit, 3);
  // trainSteps makes a fresh optimizer each call: its slots are disposed with it.
  assert.equal(tf.memory().numTensors, before);
  model.dispose();
});

test('cross-attention keys/values projected once give the same denoiser output, and are freed', () => {
  const model = tinyModel(dict);
  const { src, tgt } = tensors();
  const mask = tf.cast(tf.notEqual(tgt, dict.padIndex), 'float32') as tf.Tensor2D;
  const zt = tf.randomNormal([batch.bsz, batch.tgtLen, model.opts.latentDim], 0, 1, 'float32', 3) as tf.Tensor3D;
  const warm = model.encode(src, false); // first calls build cached tables (positions)
  tf.dispose(model.denoise(zt, 500, mask, warm, null, false));
  model.disposeEncoderOut(warm);
  const before = tf.memory().numTensors;
  const enc = model.encode(src, false);
  const cached = model.withCrossKeyValues(enc);
  assert.equal(cached.crossKv.length, model.opts.decoderLayers);
  const plain = model.denoise(zt, 500, mask, enc, null, false);
  const reused = model.denoise(zt, 500, mask, cached, null, false);
  const maxDiff = tf.tidy(() => tf.max(tf.abs(tf.sub(plain, reused))));
  const diff = maxDiff.dataSync()[0]!;
  assert.ok(diff < 1e-5, `max |difference| ${diff}`);
  tf.dispose([plain, reused, maxDiff]);
  model.disposeEncoderOut(enc);
  model.disposeEncoderOut(cached);
  assert.equal(tf.memory().numTensors, before);
  tf.dispose([src, tgt, mask, zt]);
  model.dispose();
});
