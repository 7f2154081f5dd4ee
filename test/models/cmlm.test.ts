import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs';
import { initBackend } from '../../src/backend.js';
import { DifformerError } from '../../src/errors.js';
import { Rng } from '../../src/nn/params.js';
import { CmlmModel, cmlmArchitectures, cmlmModelComponent, injectNoise, resolveCmlmOptions, type CmlmOptions } from '../../models/cmlm.js';
import { lengthClass } from '../../src/nn/length_head.js';
import { gettextPairs, joinedDictionary, makeBatch } from './difformer_fixtures.js';
import type { Dictionary } from '../../src/data/dictionary.js';

await initBackend({ backend: 'wasm' });

const pairs = gettextPairs(4, 6);
const dict = joinedDictionary(pairs);
const batch = makeBatch(dict, pairs);
const ids = { pad: dict.padIndex, bos: dict.bosIndex, eos: dict.eosIndex, unk: dict.unkIndex };
const tiny = (o: Partial<CmlmOptions> = {}, seed = 1, d: Dictionary = dict) => new CmlmModel(resolveCmlmOptions('cmlm_tiny', o), { src: d, tgt: d }, seed);

test('architectures: cmlm_transformer is 512/2048/8, 6+6, script structure flags on; cmlm_tiny is small', () => {
  const a = resolveCmlmOptions('cmlm_transformer');
  assert.deepEqual([a.encoderEmbedDim, a.encoderFfnEmbedDim, a.encoderAttentionHeads, a.encoderLayers, a.decoderLayers], [512, 2048, 8, 6, 6]);
  assert.equal(a.shareAllEmbeddings, true);
  assert.equal(a.encoderLearnedPos && a.decoderLearnedPos, true);
  assert.equal(a.applyBertInit, true);
  assert.equal(a.predLengthOffset, false, 'fairseq CMLM predicts absolute lengths by default');
  assert.equal(a.lengthLossFactor, 0.1);
  assert.equal(a.noise, 'random_mask');
  const t = resolveCmlmOptions('cmlm_tiny');
  assert.deepEqual([t.encoderEmbedDim, t.decoderFfnEmbedDim, t.decoderAttentionHeads, t.encoderLayers, t.decoderLayers], [64, 256, 4, 2, 2]);
  assert.ok('cmlm_transformer_wmt_en_de' in cmlmArchitectures);
  assert.throws(() => resolveCmlmOptions('cmlm_huge'), (e: unknown) => e instanceof DifformerError && e.code === 'DIFFORMER_UNKNOWN_NAME');
  assert.deepEqual(Object.keys(cmlmModelComponent.options).sort(), Object.keys(cmlmModelComponent.defaults).sort());
  assert.equal(cmlmModelComponent.prependBos, true);
  assert.equal(cmlmModelComponent.options.predLengthOffset?.flag, '--pred-length-offset');
  assert.equal(cmlmModelComponent.options.noise?.flag, '--noise');
  const m = tiny();
  assert.equal(m.generatorFamily, 'mask-predict');
  m.dispose();
});

test('random_mask: 1 <= k <= N real tokens masked with <unk>, BOS/EOS/pad never; deterministic under the seed', () => {
  // Rows of 1..12 real tokens with BOS, EOS and trailing pads; a real <unk> in the target is fine too.
  const len = 16;
  const rows = 400;
  const target = new Int32Array(rows * len).fill(ids.pad);
  const n = Int32Array.from({ length: rows }, (_, r) => 1 + (r % 12));
  for (let r = 0; r < rows; r++) {
    target[r * len] = ids.bos;
    for (let j = 1; j <= n[r]!; j++) target[r * len + j] = 4 + ((r + j) % 7);
    target[r * len + n[r]! + 1] = ids.eos;
  }
  const out = injectNoise(target, rows, len, ids, new Rng(5));
  const seenK = new Set<string>();
  for (let r = 0; r < rows; r++) {
    let k = 0;
    for (let j = 0; j < len; j++) {
      const i = r * len + j;
      if (out[i] === target[i]) continue;
      assert.equal(out[i], ids.unk, 'a changed position holds <unk>');
      assert.ok(j >= 1 && j <= n[r]!, `row ${r}: position ${j} is not a real token`);
      k++;
    }
    assert.ok(k >= 1 && k <= n[r]!, `row ${r}: k = ${k} of N = ${n[r]}`);
    if (n[r] === 12) seenK.add(String(k));
  }
  assert.ok(seenK.has('1') && seenK.has('12') && seenK.size >= 10, `k covers 1..N: ${[...seenK].sort().join(',')}`);
  assert.deepEqual(injectNoise(target, rows, len, ids, new Rng(5)), out, 'same seed, same masks');
  assert.notDeepEqual(injectNoise(target, rows, len, ids, new Rng(6)), out);
  // full_mask (vanilla NAT) masks every real token.
  const full = injectNoise(target.subarray(0, len), 1, len, ids, new Rng(1), 'full_mask');
  assert.deepEqual(Array.from(full.subarray(1, n[0]! + 1)), new Array(n[0]).fill(ids.unk));
  // No real token: nothing to mask.
  const empty = Int32Array.from([ids.bos, ids.eos, ids.pad]);
  assert.deepEqual(injectNoise(empty, 1, 3, ids, new Rng(1)), empty);
});

test('the model draws its noise from params.rng: same seed same masks, restored state same draws', () => {
  const a = tiny({}, 3);
  const b = tiny({}, 3);
  const state = a.params.rng.getState();
  const first = a.noisedTarget(batch);
  assert.deepEqual(b.noisedTarget(batch), first);
  assert.notDeepEqual(a.noisedTarget(batch), first, 'the stream advances');
  a.params.rng.setState(state);
  assert.deepEqual(a.noisedTarget(batch), first, 'a checkpointed RNG state replays the draws');
  a.dispose();
  b.dispose();
});

test('shapes: encoder [B, S, C], length [B, 256], decoder [B, T, C], log-probs [B, T, V]; terms select the <unk> rows', () => {
  const model = tiny();
  const src = tf.tensor2d(batch.srcTokens, [batch.bsz, batch.srcLen], 'int32');
  const tgt = tf.tensor2d(batch.target, [batch.bsz, batch.tgtLen], 'int32');
  const enc = model.encode(src, false);
  assert.deepEqual(enc.out.shape, [batch.bsz, batch.srcLen, 64]);
  const ll = model.lengthLogits(enc);
  assert.deepEqual(ll.shape, [batch.bsz, 256]);
  const h = model.decodeFeatures(enc, tgt, false);
  assert.deepEqual(h.shape, [batch.bsz, batch.tgtLen, 64]);
  const lp = model.decodeLogProbs(enc, tgt);
  assert.deepEqual(lp.shape, [batch.bsz, batch.tgtLen, dict.size]);
  const rowSums = tf.tidy(() => tf.sum(tf.exp(lp), 2).dataSync());
  assert.ok(rowSums.every((s) => Math.abs(s - 1) < 1e-4));
  const prev = model.noisedTarget(batch);
  const masked = prev.filter((t) => t === ids.unk).length;
  const terms = model.natForward(batch, true, prev);
  assert.deepEqual(terms.word_ins!.out!.shape, [masked, dict.size]);
  assert.deepEqual(Array.from(terms.word_ins!.tgt!.dataSync()), Array.from(batch.target).filter((_, i) => prev[i] === ids.unk));
  assert.deepEqual(terms.length!.out!.shape, [batch.bsz, 256]);
  assert.equal(terms.length!.factor, 0.1);
  assert.equal(terms.word_ins!.smoothed && terms.word_ins!.nllLoss, true);
  const none = model.natForward(batch, false, batch.target);
  assert.equal(none.word_ins!.out, null, 'no <unk> in the decoder input: nothing to score');
  tf.dispose([src, tgt, enc.out, enc.paddingMask, ll, h, lp, terms.word_ins!.out!, terms.word_ins!.tgt!, terms.length!.out!, terms.length!.tgt!, none.length!.out!, none.length!.tgt!]);
  model.dispose();
});

test('length targets: absolute target length by default, tgt - src + 128 with --pred-length-offset (BOS/EOS counted)', () => {
  for (const offset of [false, true]) {
    const model = tiny({ predLengthOffset: offset });
    const terms = model.natForward(batch, false);
    const want = Array.from(batch.tgtLengths, (t, i) => lengthClass(t, batch.srcLengths[i]!, offset));
    assert.deepEqual(Array.from(terms.length!.tgt!.dataSync()), want);
    if (!offset) assert.deepEqual(want, Array.from(batch.tgtLengths));
    for (const t of Object.values(terms)) {
      t.out?.dispose();
      t.tgt?.dispose();
    }
    model.dispose();
  }
});

test('the decoder is bidirectional: a later token changes earlier positions', () => {
  const model = tiny({ dropout: 0 });
  const src = tf.tensor2d(batch.srcTokens, [batch.bsz, batch.srcLen], 'int32');
  const enc = model.encode(src, false);
  const a = Int32Array.from(batch.target);
  const b = Int32Array.from(batch.target);
  b[3] = ids.unk; // row 0, position 3
  const [ha, hb] = [a, b].map((t) => tf.tidy(() => model.decodeFeatures(enc, tf.tensor2d(t, [batch.bsz, batch.tgtLen], 'int32'), false).arraySync()));
  assert.ok(Math.abs(ha![0]![1]![0]! - hb![0]![1]![0]!) > 1e-6, 'position 1 sees position 3');
  assert.deepEqual(ha![1], hb![1], 'other sentences are unaffected');
  tf.dispose([src, enc.out, enc.paddingMask]);
  model.dispose();
});

test("parameter names are fairseq's; shared table; BERT init N(0, 0.02) or fairseq N(0, C^-0.5)", () => {
  const model = tiny({ encoderLayers: 1, decoderLayers: 1 });
  const names = model.params.names();
  for (const n of [
    'encoder.embed_tokens.weight',
    'encoder.embed_positions.weight',
    'encoder.layers.0.self_attn.q_proj.weight',
    'encoder.layers.0.fc1.weight',
    'decoder.embed_positions.weight',
    'decoder.layers.0.self_attn.k_proj.bias',
    'decoder.layers.0.encoder_attn.v_proj.weight',
    'decoder.layers.0.final_layer_norm.weight',
    'decoder.embed_length.weight',
  ]) {
    assert.ok(names.includes(n), n);
  }
  assert.deepEqual(model.params.aliases(), {
    'decoder.embed_tokens.weight': 'encoder.embed_tokens.weight',
    'decoder.output_projection.weight': 'encoder.embed_tokens.weight',
  });
  assert.deepEqual(model.params.get('decoder.embed_length.weight').shape, [256, 64]);
  assert.deepEqual(model.params.get('decoder.embed_positions.weight').shape, [256 + dict.padIndex + 1, 64]);
  const std = (name: string) => {
    const v = Array.from(model.params.get(name).dataSync());
    return Math.sqrt(v.reduce((a, x) => a + x * x, 0) / v.length);
  };
  assert.ok(Math.abs(std('encoder.layers.0.fc1.weight') - 0.02) < 0.002, 'the encoder is BERT-initialised too');
  assert.ok(Math.abs(std('decoder.embed_length.weight') - 0.02) < 0.002);
  const e = model.params.get('encoder.embed_tokens.weight').arraySync() as number[][];
  assert.ok(e[dict.padIndex]!.every((v) => v === 0), 'pad row zero');
  model.dispose();

  const plain = tiny({ applyBertInit: false, shareAllEmbeddings: false, encoderLayers: 1, decoderLayers: 1 });
  for (const n of ['decoder.embed_tokens.weight', 'decoder.output_projection.weight']) assert.ok(plain.params.names().includes(n), n);
  const v = Array.from(plain.params.get('decoder.embed_tokens.weight').dataSync());
  assert.ok(Math.abs(Math.sqrt(v.reduce((a, x) => a + x * x, 0) / v.length) - 64 ** -0.5) < 0.02, 'fairseq embedding init N(0, C^-0.5)');
  plain.dispose();
});

test('--share-all-embeddings needs a joined dictionary', () => {
  const other = joinedDictionary({ src: ['ein zwei drei'], tgt: ['one'] });
  assert.throws(
    () => new CmlmModel(resolveCmlmOptions('cmlm_tiny'), { src: dict, tgt: other }, 1),
    (e: unknown) => e instanceof DifformerError && e.code === 'DIFFORMER_BAD_OPTION' && /joined/.test(e.message),
  );
});
