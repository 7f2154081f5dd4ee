import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs';
import { initBackend } from '../../src/backend.js';
import { DifformerError } from '../../src/errors.js';
import {
  disposeDecoderState,
  resolveTransformerOptions,
  transformerArchitectures,
  TransformerModel,
  type TransformerOptions,
} from '../../models/transformer.js';
import { disposeEncoderOut } from '../../src/nn/encoder.js';
import { labelSmoothedCrossEntropy } from '../../criterions/label_smoothed_cross_entropy.js';

await initBackend({ backend: 'wasm' });

const BOS = 0;
const PAD = 1;
const EOS = 2;
const dict = { size: 24, padIndex: PAD, eosIndex: EOS, bosIndex: BOS };
const dicts = { src: dict, tgt: dict };

function tiny(overrides: Partial<TransformerOptions> = {}): TransformerOptions {
  return resolveTransformerOptions('transformer_tiny', overrides);
}

const int2d = (rows: number[][]) => tf.tensor2d(rows, [rows.length, rows[0]!.length], 'int32');

test('forward shapes: logits [B, T, V]; encoder out [B, S, C]', () => {
  const model = new TransformerModel(tiny(), dicts, 1);
  const src = int2d([
    [5, 6, 7, 8, EOS],
    [PAD, PAD, 9, 10, EOS],
  ]);
  const prev = int2d([
    [EOS, 11, 12, 13],
    [EOS, 14, PAD, PAD],
  ]);
  const logits = model.forward(src, prev, false);
  assert.deepEqual(logits.shape, [2, 4, 24]);
  const enc = model.encode(src, false);
  assert.deepEqual(enc.out.shape, [2, 5, 64]);
  assert.deepEqual(Array.from(enc.paddingMask.dataSync()), [0, 0, 0, 0, 0, 1, 1, 0, 0, 0]);
  assert.ok(logits.dataSync().every(Number.isFinite));
  disposeEncoderOut(enc);
  tf.dispose([src, prev, logits]);
  model.dispose();
});

test('parameter names are fairseq names', () => {
  const model = new TransformerModel(tiny({ encoderLayers: 1, decoderLayers: 1 }), dicts, 1);
  const attn = (p: string) => ['k_proj', 'v_proj', 'q_proj', 'out_proj'].flatMap((n) => [`${p}.${n}.weight`, `${p}.${n}.bias`]);
  const ln = (p: string) => [`${p}.weight`, `${p}.bias`];
  const ffn = (p: string) => [`${p}.fc1.weight`, `${p}.fc1.bias`, `${p}.fc2.weight`, `${p}.fc2.bias`];
  const e = 'encoder.layers.0';
  const d = 'decoder.layers.0';
  assert.deepEqual(model.params.names(), [
    'encoder.embed_tokens.weight',
    ...attn(`${e}.self_attn`),
    ...ln(`${e}.self_attn_layer_norm`),
    ...ffn(e),
    ...ln(`${e}.final_layer_norm`),
    'decoder.embed_tokens.weight',
    ...attn(`${d}.self_attn`),
    ...ln(`${d}.self_attn_layer_norm`),
    ...attn(`${d}.encoder_attn`),
    ...ln(`${d}.encoder_attn_layer_norm`),
    ...ffn(d),
    ...ln(`${d}.final_layer_norm`),
    'decoder.output_projection.weight',
  ]);
  assert.deepEqual(model.params.get('decoder.layers.0.encoder_attn.k_proj.weight').shape, [64, 64]);
  assert.deepEqual(model.params.get('encoder.layers.0.fc1.weight').shape, [256, 64]);
  model.dispose();

  const pre = new TransformerModel(tiny({ encoderLayers: 1, decoderLayers: 1, encoderNormalizeBefore: true, decoderNormalizeBefore: true, encoderLearnedPos: true, decoderLearnedPos: true }), dicts, 1);
  for (const n of ['encoder.layer_norm.weight', 'decoder.layer_norm.bias', 'encoder.embed_positions.weight', 'decoder.embed_positions.weight']) {
    assert.ok(pre.params.names().includes(n), n);
  }
  assert.deepEqual(pre.params.get('encoder.embed_positions.weight').shape, [1024 + PAD + 1, 64]);
  pre.dispose();
});

test('embedding sharing: tied tables are one variable under fairseq aliases', () => {
  const all = new TransformerModel(tiny({ shareAllEmbeddings: true }), dicts, 1);
  assert.equal(all.params.get('decoder.embed_tokens.weight'), all.params.get('encoder.embed_tokens.weight'));
  assert.equal(all.params.get('decoder.output_projection.weight'), all.params.get('encoder.embed_tokens.weight'));
  assert.deepEqual(all.params.aliases(), {
    'decoder.embed_tokens.weight': 'encoder.embed_tokens.weight',
    'decoder.output_projection.weight': 'encoder.embed_tokens.weight',
  });
  const separate = new TransformerModel(tiny(), dicts, 1);
  assert.equal(all.params.numParams(), separate.params.numParams() - 2 * 24 * 64);
  all.dispose();
  separate.dispose();

  const io = new TransformerModel(tiny({ shareDecoderInputOutputEmbed: true }), dicts, 1);
  assert.ok(!io.params.names().includes('decoder.output_projection.weight'));
  assert.equal(io.params.get('decoder.output_projection.weight'), io.params.get('decoder.embed_tokens.weight'));
  io.dispose();

  assert.throws(
    () => new TransformerModel(tiny({ shareAllEmbeddings: true }), { src: dict, tgt: { ...dict, size: 32 } }, 1),
    (e: unknown) => e instanceof DifformerError && e.code === 'DIFFORMER_BAD_OPTION' && /joined dictionary/.test(e.message),
  );
});

test('embeddings: N(0, d^-0.5) with the pad row zero; same seed, same weights', () => {
  const a = new TransformerModel(tiny(), dicts, 7);
  const b = new TransformerModel(tiny(), dicts, 7);
  const e = a.params.get('encoder.embed_tokens.weight').arraySync() as number[][];
  assert.ok(e[PAD]!.every((v) => v === 0));
  for (const n of a.params.names()) assert.deepEqual(a.params.get(n).dataSync(), b.params.get(n).dataSync(), n);
  a.dispose();
  b.dispose();
});

test('incremental decodeStep (with a beam reorder) equals the full decode', () => {
  for (const normalizeBefore of [false, true]) {
    const model = new TransformerModel(tiny({ encoderNormalizeBefore: normalizeBefore, decoderNormalizeBefore: normalizeBefore, decoderLearnedPos: normalizeBefore }), dicts, 3);
    const src = int2d([
      [5, 6, 7, 8, EOS],
      [PAD, 9, 10, 11, EOS],
      [PAD, PAD, 12, 13, EOS],
    ]);
    const prevRows = [
      [EOS, 3, 4, 5, 6, 7],
      [EOS, 8, 9, 10, 11, 12],
      [EOS, 13, 14, 15, 16, 17],
    ];
    const enc = model.encode(src, false);
    const full = tf.logSoftmax(model.decode(enc, int2d(prevRows), false)).arraySync() as number[][][];
    let state = model.initDecoderState(enc);
    // After step 2, beams are reordered: row i continues the history of row order[i].
    const order = [2, 0, 0];
    let rowOf = [0, 1, 2];
    for (let t = 0; t < 6; t++) {
      if (t === 2) {
        const idx = tf.tensor1d(order, 'int32');
        state = model.reorderState(state, idx);
        idx.dispose();
        rowOf = order.map((i) => rowOf[i]!);
      }
      const tokens = int2d(rowOf.map((r) => [prevRows[r]![t]!]));
      const { logProbs, state: next } = model.decodeStep(state, tokens);
      state = next;
      const got = logProbs.arraySync();
      rowOf.forEach((r, i) => {
        const diff = Math.max(...got[i]!.map((v, j) => Math.abs(v - full[r]![t]![j]!)));
        assert.ok(diff < 1e-4, `normalizeBefore=${normalizeBefore} step ${t} row ${i}: max diff ${diff}`);
      });
      tf.dispose([tokens, logProbs]);
    }
    disposeDecoderState(state);
    disposeEncoderOut(enc);
    src.dispose();
    model.dispose();
  }
});

test('tensor count stays flat across training steps and decoding', () => {
  const model = new TransformerModel(tiny({ dropout: 0.1, attentionDropout: 0.1, activationDropout: 0.1 }), dicts, 5);
  const optimizer = tf.train.adam(1e-3);
  const src = int2d([
    [5, 6, 7, EOS],
    [PAD, 8, 9, EOS],
  ]);
  const prev = int2d([
    [EOS, 10, 11],
    [EOS, 12, PAD],
  ]);
  const target = int2d([
    [10, 11, EOS],
    [12, EOS, PAD],
  ]);
  const step = () => {
    const cost = optimizer.minimize(
      () => labelSmoothedCrossEntropy(model.forward(src, prev, true), target, { labelSmoothing: 0.1, sentenceAvg: false }, PAD, 5).loss,
      true,
      model.params.trainableVariables(),
    );
    cost?.dispose();
  };
  step(); // Adam creates its slots on the first step
  const before = tf.memory().numTensors;
  for (let i = 0; i < 3; i++) step();
  assert.equal(tf.memory().numTensors, before);

  const decode = () => {
    const enc = model.encode(src, false);
    let state = model.initDecoderState(enc);
    for (let t = 0; t < 3; t++) {
      const tokens = int2d([[EOS], [EOS]]);
      const r = model.decodeStep(state, tokens);
      state = r.state;
      const idx = tf.tensor1d([1, 0], 'int32');
      state = model.reorderState(state, idx);
      tf.dispose([tokens, r.logProbs, idx]);
    }
    disposeDecoderState(state);
    disposeEncoderOut(enc);
  };
  decode();
  const beforeDecode = tf.memory().numTensors;
  decode();
  assert.equal(tf.memory().numTensors, beforeDecode);
  optimizer.dispose();
  tf.dispose([src, prev, target]);
  model.dispose();
});

test('a tiny model overfits a handful of sentence pairs (Adam), then greedy-decodes them', (t) => {
  // Task: reverse the source. Sources have different lengths (left-padded, as fairseq's default).
  const pairs = [
    [4, 5, 6, 7, 8],
    [9, 10, 11],
    [12, 13, 14, 15],
    [16, 17, 18, 19, 20, 21],
  ].map((s) => ({ src: s, tgt: [...s].reverse() }));
  const srcLen = Math.max(...pairs.map((p) => p.src.length)) + 1;
  const tgtLen = Math.max(...pairs.map((p) => p.tgt.length)) + 1;
  const src = int2d(pairs.map((p) => [...Array(srcLen - p.src.length - 1).fill(PAD), ...p.src, EOS]));
  const target = int2d(pairs.map((p) => [...p.tgt, EOS, ...Array(tgtLen - p.tgt.length - 1).fill(PAD)]));
  const prev = int2d(pairs.map((p) => [EOS, ...p.tgt, ...Array(tgtLen - p.tgt.length - 1).fill(PAD)]));
  const ntokens = pairs.reduce((a, p) => a + p.tgt.length + 1, 0);

  const model = new TransformerModel(tiny({ dropout: 0 }), dicts, 11);
  const optimizer = tf.train.adam(3e-3, 0.9, 0.98, 1e-8);
  let nll = Infinity;
  const started = Date.now();
  let steps = 0;
  for (; steps < 400 && nll > 0.02; steps++) {
    let nllLoss: tf.Scalar | undefined;
    optimizer.minimize(
      () => {
        const out = labelSmoothedCrossEntropy(model.forward(src, prev, true), target, { labelSmoothing: 0, sentenceAvg: false }, PAD, ntokens);
        nllLoss = tf.keep(out.nllLoss);
        // Mean over tokens: fairseq sums and divides the gradient by sample_size.
        return tf.div(out.loss, ntokens) as tf.Scalar;
      },
      false,
      model.params.trainableVariables(),
    );
    nll = nllLoss!.dataSync()[0]! / ntokens;
    nllLoss!.dispose();
  }
  t.diagnostic(`${tf.getBackend()}: per-token nll ${nll.toFixed(4)} after ${steps} steps, ${Date.now() - started} ms`);
  assert.ok(nll < 0.02, `per-token nll after training: ${nll} (${Date.now() - started} ms)`);

  // Greedy decoding with the incremental decoder reproduces every target.
  const enc = model.encode(src, false);
  let state = model.initDecoderState(enc);
  let tokens = int2d(pairs.map(() => [EOS]));
  const hyps: number[][] = pairs.map(() => []);
  for (let i = 0; i < tgtLen; i++) {
    const r = model.decodeStep(state, tokens);
    state = r.state;
    const next = tf.argMax(r.logProbs, 1);
    const ids = Array.from(next.dataSync());
    ids.forEach((id, i) => hyps[i]!.push(id));
    tokens.dispose();
    tokens = tf.reshape(tf.cast(next, 'int32'), [pairs.length, 1]) as tf.Tensor2D;
    tf.dispose([r.logProbs, next]);
  }
  pairs.forEach((p, i) => assert.deepEqual(hyps[i]!.slice(0, p.tgt.length + 1), [...p.tgt, EOS]));
  disposeDecoderState(state);
  disposeEncoderOut(enc);
  tf.dispose([tokens, src, target, prev]);
  optimizer.dispose();
  model.dispose();
});

test('named architectures resolve over the defaults; unknown names throw', () => {
  assert.equal(resolveTransformerOptions('transformer_iwslt_de_en').encoderFfnEmbedDim, 1024);
  assert.equal(resolveTransformerOptions('transformer_iwslt_de_en').decoderAttentionHeads, 4);
  assert.equal(resolveTransformerOptions('transformer_vaswani_wmt_en_de_big').dropout, 0.3);
  assert.equal(resolveTransformerOptions('transformer_wmt_en_de').encoderEmbedDim, 512);
  assert.ok('transformer_tiny' in transformerArchitectures);
  assert.throws(() => resolveTransformerOptions('transformer_huge'), /unknown architecture 'transformer_huge'.*transformer_iwslt_de_en/);
});
