import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs';
import { initBackend } from '../../src/backend.js';
import { DifformerError } from '../../src/errors.js';
import {
  buildMaskPredictGenerator,
  maskPredictGenerationDefaults,
  maskPredictGenerationOptionTable,
  remaskCount,
  type MaskPredictGenerationOptions,
  type MaskPredictModel,
} from '../../src/generate/mask_predict.js';
import { diffusionGenerationOptionTable } from '../../src/generate/diffusion_sampler.js';
import type { ArScorer } from '../../src/generate/candidates.js';
import { CmlmModel, resolveCmlmOptions, type EncoderOut } from '../../models/cmlm.js';
import { NatLossCriterion } from '../../criterions/nat_loss.js';
import { AutoregressiveTransformer } from '../../models/transformer_component.js';
import { resolveTransformerOptions } from '../../models/transformer.js';
import { labelSmoothedCrossEntropy } from '../../criterions/label_smoothed_cross_entropy.js';
import type { Batch } from '../../src/data/language_pair_dataset.js';
import { gettextPairs, joinedDictionary, makeBatch, referenceTokens } from '../models/difformer_fixtures.js';

await initBackend({ backend: 'wasm' });

const pairs = gettextPairs(8, 6);
const dict = joinedDictionary(pairs);
const batch = makeBatch(dict, pairs);
const { bosIndex: BOS, eosIndex: EOS, padIndex: PAD, unkIndex: UNK } = dict;
const options = (o: Partial<MaskPredictGenerationOptions> = {}): MaskPredictGenerationOptions => ({ ...maskPredictGenerationDefaults, ...o });

/**
 * A stand-in model whose decoder ignores its input: position j predicts token 10 + j with
 * probability q_j = 0.9 - 0.1 j (so later positions are less confident), whatever the row. It
 * records every decoder input. Its "encoder output" is the sentence index of each row.
 */
function stub(lengths: number[]) {
  const calls: number[][][] = [];
  const V = dict.size;
  const model: MaskPredictModel<number[]> = {
    generatorFamily: 'mask-predict',
    maxTargetPositions: 64,
    encode: (src) => Array.from({ length: src.shape[0] }, (_, i) => i),
    predictLengths: () => Int32Array.from(lengths),
    reorderEncoderOut: (e, idx) => Array.from(idx.dataSync(), (i) => e[i]!),
    disposeEncoderOut: () => undefined,
    decodeLogProbs: (_e, tokens) => {
      calls.push(tokens.arraySync() as number[][]);
      const [a, w] = tokens.shape;
      const lp = new Float32Array(a * w * V);
      for (let r = 0; r < a; r++) {
        for (let j = 0; j < w; j++) {
          const q = Math.max(0.3, 0.9 - 0.1 * j);
          lp.fill(Math.log((1 - q) / (V - 1)), (r * w + j) * V, (r * w + j + 1) * V);
          lp[(r * w + j) * V + 10 + j] = Math.log(q);
        }
      }
      return tf.tensor3d(lp, [a, w, V]);
    },
  };
  return { model, calls };
}
const oneSentence: Batch = makeBatch(dict, { src: [pairs.src[0]!], tgt: [pairs.tgt[0]!] });
const count = (row: number[], t: number) => row.filter((x) => x === t).length;

test('options: fairseq flag names; --retain-iter-history shared with the diffusion sampler', () => {
  assert.deepEqual(Object.keys(maskPredictGenerationOptionTable).sort(), Object.keys(maskPredictGenerationDefaults).sort());
  assert.equal(maskPredictGenerationDefaults.iterDecodeMaxIter, 10);
  assert.equal(maskPredictGenerationDefaults.iterDecodeWithBeam, 1);
  assert.equal(maskPredictGenerationOptionTable.iterDecodeMaxIter?.flag, '--iter-decode-max-iter');
  assert.equal(maskPredictGenerationOptionTable.iterDecodeWithBeam?.flag, '--iter-decode-with-beam');
  assert.equal(maskPredictGenerationOptionTable.iterDecodeForceMaxIter?.flag, '--iter-decode-force-max-iter');
  assert.equal(maskPredictGenerationOptionTable.iterDecodeWithExternalReranker?.flag, '--iter-decode-with-external-reranker');
  assert.equal(maskPredictGenerationOptionTable.iterDecodeEosPenalty?.flag, '--iter-decode-eos-penalty');
  const a = maskPredictGenerationOptionTable.retainIterHistory!;
  const b = diffusionGenerationOptionTable.retainIterHistory!;
  assert.equal(a.flag, b.flag);
  assert.equal(a.parse === undefined, b.parse === undefined, 'same kind (boolean), so the CLI declares it once');
});

test('re-masking count n = floor((L-2)(1 - (step+1)/(M+1))) in float32 as torch', () => {
  // L' = 5 real tokens, M = 4: 4, 3, 2, 1 (a float64 product would give 0 at the last step: 5 * 0.19999999999999996).
  assert.deepEqual([0, 1, 2, 3].map((s) => remaskCount(7, s, 5)), [4, 3, 2, 1]);
  assert.deepEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9].map((s) => remaskCount(12, s, 10)), [9, 8, 7, 6, 5, 4, 3, 2, 1, 0]);
  assert.deepEqual([0, 1].map((s) => remaskCount(4, s, 11)), [1, 1]);
  assert.equal(remaskCount(2, 0, 5), 0, 'no real tokens: nothing to re-mask');
});

test('length beam: candidates L* + {-floor(N/2) .. N-1-floor(N/2)}, at least 2, all sentences in one batch', () => {
  const two = makeBatch(dict, { src: pairs.src.slice(0, 2), tgt: pairs.tgt.slice(0, 2) });
  const { model, calls } = stub([5, 1]);
  const gen = buildMaskPredictGenerator(model, { tgtDict: dict, options: options({ iterDecodeWithBeam: 4, iterDecodeMaxIter: 0 }), seed: 1 });
  assert.equal(gen.beamLabel, 4, 'without --beam, the length beam');
  const hypos = gen.generate(two);
  assert.equal(calls.length, 1);
  const rows = calls[0]!;
  assert.equal(rows.length, 8);
  const lens = rows.map((r) => r.filter((t) => t !== PAD).length);
  assert.deepEqual(lens, [3, 4, 5, 6, 2, 2, 2, 3]);
  for (const [i, r] of rows.entries()) {
    assert.equal(r[0], BOS);
    assert.equal(r[lens[i]! - 1], EOS);
    assert.equal(count(r, UNK), lens[i]! - 2, 'the interior starts masked');
  }
  assert.deepEqual(hypos.map((h) => h.length), [4, 4]);
  assert.equal(buildMaskPredictGenerator(model, { tgtDict: dict, options: options(), seed: 1, beamLabel: 5 }).beamLabel, 5, 'fairseq prints --beam');
});

test('re-masking: the least confident interior tokens go back to <unk>; BOS/EOS never; force-max-iter runs M+1 passes', () => {
  const { model, calls } = stub([7]);
  const gen = buildMaskPredictGenerator(model, { tgtDict: dict, options: options({ iterDecodeMaxIter: 4, iterDecodeForceMaxIter: true, retainIterHistory: true }), seed: 1 });
  const r = gen.generateWithHistory(oneSentence);
  assert.equal(calls.length, 5, 'M + 1 decoder passes');
  // L' = 5: the inputs of the passes hold 5, 4, 3, 2, 1 masks, always the rightmost (least confident) ones.
  calls.forEach((rows, step) => {
    const row = rows[0]!;
    assert.equal(row[0], BOS);
    assert.equal(row[6], EOS);
    const masked = 5 - step;
    assert.deepEqual(row.slice(1, 6), [...[11, 12, 13, 14, 15].slice(0, 5 - masked), ...new Array(masked).fill(UNK)], `pass ${step}`);
  });
  const h = r.hypos[0]![0]!;
  assert.deepEqual(Array.from(h.tokens), [11, 12, 13, 14, 15, EOS], 'no BOS, EOS last');
  const lq = [0.8, 0.7, 0.6, 0.5, 0.4].map((q) => Math.fround(Math.log(q)));
  assert.deepEqual(Array.from(h.positionalScores), [...lq, 0]);
  assert.ok(Math.abs(h.score - lq.reduce((a, x) => a + x, 0) / 7) < 1e-6, 'mean over all 7 non-pad tokens, BOS/EOS scoring 0');
  // History: the initial row, then each prediction and each re-masking: 1 + 5 + 4 rows.
  const hist = r.history![0]!;
  assert.equal(hist.length, 10);
  assert.deepEqual(Array.from(hist[0]!), [UNK, UNK, UNK, UNK, UNK, EOS]);
  assert.deepEqual(Array.from(hist[1]!), [11, 12, 13, 14, 15, EOS]);
  assert.deepEqual(Array.from(hist[2]!), [11, UNK, UNK, UNK, UNK, EOS]);
  assert.deepEqual(Array.from(hist[9]!), Array.from(h.tokens));
  assert.equal(buildMaskPredictGenerator(model, { tgtDict: dict, options: options(), seed: 1 }).generateWithHistory(oneSentence).history, undefined);
});

test('adaptive stop: a row equal to the previous one finishes early (fairseq keeps its <unk>s); force-max-iter does not', () => {
  // L' = 2, M = 10: n = 1, 1, ...: the same position is re-masked twice, so the rows repeat after pass 2.
  const adaptive = stub([4]);
  const out = buildMaskPredictGenerator(adaptive.model, { tgtDict: dict, options: options({ iterDecodeMaxIter: 10 }), seed: 1 }).generate(oneSentence);
  assert.equal(adaptive.calls.length, 2);
  assert.deepEqual(Array.from(out[0]![0]!.tokens), [11, UNK, EOS], 'finalised after re-masking, as fairseq');
  const forced = stub([4]);
  const full = buildMaskPredictGenerator(forced.model, { tgtDict: dict, options: options({ iterDecodeMaxIter: 10, iterDecodeForceMaxIter: true }), seed: 1 }).generate(oneSentence);
  assert.equal(forced.calls.length, 11);
  assert.deepEqual(Array.from(full[0]![0]!.tokens), [11, 12, EOS]);
  // fairseq's hypo["steps"] (I- lines): the 0-based pass at which the row was final
  assert.equal(out[0]![0]!.steps, 1);
  assert.equal(full[0]![0]!.steps, 10);
  // Finished candidates leave the batch. M = 4, lengths 5, 6, 7: L' = 3 re-masks 2, 1, 1 and stops
  // after pass 3; L' = 4 and 5 re-mask 3, 2, 1, 0 and 4, 3, 2, 1 and run all 5 passes.
  const mixed = stub([6]);
  buildMaskPredictGenerator(mixed.model, { tgtDict: dict, options: options({ iterDecodeMaxIter: 4, iterDecodeWithBeam: 3 }), seed: 1 }).generate(oneSentence);
  assert.deepEqual(mixed.calls.map((c) => c.length), [3, 3, 3, 2, 2]);
});

test('external reranker: needs a scorer and beam > 1; scores EOS-started rows; its scores pick and rank', () => {
  const { model } = stub([5]);
  const bad = (o: Partial<MaskPredictGenerationOptions>, reranker?: ArScorer) => () =>
    buildMaskPredictGenerator(model, { tgtDict: dict, options: options(o), seed: 1, reranker });
  const isBad = (e: unknown) => e instanceof DifformerError && e.code === 'DIFFORMER_BAD_OPTION';
  assert.throws(bad({ iterDecodeWithExternalReranker: true, iterDecodeWithBeam: 3 }), (e: unknown) => isBad(e) && /--path/.test((e as Error).message));
  const scorer: ArScorer & { seen: number[][][] } = {
    seen: [],
    scoreCandidates(src, prev) {
      this.seen.push(src.arraySync() as number[][], prev.arraySync() as number[][]);
      // Prefer the longest candidate.
      return Float32Array.from(prev.arraySync() as number[][], (row) => row.filter((t) => t !== PAD).length);
    },
  };
  assert.throws(bad({ iterDecodeWithExternalReranker: true }, scorer), isBad);
  assert.throws(bad({ iterDecodeMaxIter: -1 }), isBad);
  const gen = buildMaskPredictGenerator(model, { tgtDict: dict, options: options({ iterDecodeWithExternalReranker: true, iterDecodeWithBeam: 3, iterDecodeMaxIter: 2 }), seed: 1, reranker: scorer });
  const h = gen.generate(oneSentence)[0]!;
  const [src, prev] = scorer.seen as [number[][], number[][]];
  assert.equal(prev.length, 3);
  assert.ok(prev.every((row) => row[0] === EOS), 'autoregressive rows start with EOS');
  assert.deepEqual(src[2], Array.from(oneSentence.srcTokens), 'the source row as in the batch (BOS first)');
  assert.deepEqual(h.map((x) => x.tokens.length), [5, 4, 3], 'ranked by the reranker');
  assert.deepEqual(h.map((x) => x.score), [6, 5, 4]);
  // Without the flag the own mean score decides (here the shortest: fewer low-confidence tokens).
  const own = buildMaskPredictGenerator(model, { tgtDict: dict, options: options({ iterDecodeWithBeam: 3, iterDecodeMaxIter: 2 }), seed: 1, reranker: scorer }).generate(oneSentence)[0]!;
  assert.equal(own[0]!.tokens.length, 3);
});

/** `steps` Adam updates of a tiny CMLM on the batch (nat_loss, eps 0.1). */
function trainCmlm(steps: number): CmlmModel {
  const model = new CmlmModel(resolveCmlmOptions('cmlm_tiny', { dropout: 0 }), { src: dict, tgt: dict }, 1);
  const crit = new NatLossCriterion({ labelSmoothing: 0.1 });
  const opt = tf.train.adam(5e-3, 0.9, 0.98, 1e-8);
  const vars = model.params.trainableVariables();
  for (let s = 0; s < steps; s++) {
    const { value, grads } = tf.variableGrads(() => crit.forward(model, batch, true).loss, vars);
    opt.applyGradients(Object.entries(grads).map(([name, tensor]) => ({ name, tensor })));
    tf.dispose([value, ...Object.values(grads)]);
  }
  opt.dispose();
  return model;
}

/** A tiny AR Transformer on the same pairs (source with BOS, as it will see at reranking; target without). */
function trainReranker(steps: number): AutoregressiveTransformer {
  const ar = new AutoregressiveTransformer(resolveTransformerOptions('transformer_tiny', { dropout: 0, shareAllEmbeddings: true }), { src: dict, tgt: dict }, 2);
  const w = batch.tgtLen - 1;
  const tgt = new Int32Array(batch.bsz * w).fill(PAD);
  const prev = new Int32Array(batch.bsz * w).fill(PAD);
  for (let i = 0; i < batch.bsz; i++) {
    const row = batch.target.subarray(i * batch.tgtLen + 1, i * batch.tgtLen + batch.tgtLengths[i]!); // y.. EOS
    tgt.set(row, i * w);
    prev[i * w] = EOS;
    prev.set(row.subarray(0, row.length - 1), i * w + 1);
  }
  const opt = tf.train.adam(5e-3, 0.9, 0.98, 1e-8);
  const vars = ar.params.trainableVariables();
  const ntokens = tgt.filter((t) => t !== PAD).length;
  for (let s = 0; s < steps; s++) {
    const { value, grads } = tf.variableGrads(() => {
      const logits = ar.forward(tf.tensor2d(batch.srcTokens, [batch.bsz, batch.srcLen], 'int32'), tf.tensor2d(prev, [batch.bsz, w], 'int32'), true);
      return tf.div(labelSmoothedCrossEntropy(logits, tf.tensor2d(tgt, [batch.bsz, w], 'int32'), { labelSmoothing: 0, sentenceAvg: false }, PAD).loss, ntokens) as tf.Scalar;
    }, vars);
    opt.applyGradients(Object.entries(grads).map(([name, tensor]) => ({ name, tensor })));
    tf.dispose([value, ...Object.values(grads)]);
  }
  opt.dispose();
  return ar;
}

test('a tiny CMLM trained on real pairs decodes them back with M = 4 (length beam 1 and 3, AR reranking)', () => {
  const model = trainCmlm(100);
  const refs = referenceTokens(batch, dict).map((r) => Array.from(r).join(' '));
  const src = tf.tensor2d(batch.srcTokens, [batch.bsz, batch.srcLen], 'int32');
  const enc = model.encode(src, false);
  assert.deepEqual(Array.from(model.predictLengths(enc)), Array.from(batch.tgtLengths), 'the length head has learned the lengths');
  tf.dispose([src, enc.out, enc.paddingMask]);
  const decode = (o: Partial<MaskPredictGenerationOptions>, reranker?: ArScorer) =>
    buildMaskPredictGenerator(model, { tgtDict: dict, options: options({ iterDecodeMaxIter: 4, iterDecodeForceMaxIter: true, ...o }), seed: 1, reranker }).generate(batch);
  const exact = (hypos: ReturnType<typeof decode>) => hypos.filter((h, i) => Array.from(h[0]!.tokens).join(' ') === refs[i]).length;
  const show = (hypos: ReturnType<typeof decode>) => hypos.map((h) => dict.string(h[0]!.tokens)).join(' | ');

  const before = tf.memory().numTensors;
  const b1 = decode({});
  assert.equal(tf.memory().numTensors, before, 'no tensors left behind');
  assert.ok(exact(b1) >= 7, `beam 1: ${exact(b1)}/8: ${show(b1)}`);

  // Beam 3: the reference is among the candidates. The own-score pick is not asserted: fairseq's mean
  // over BOS/EOS zeros favours the L-1 candidate, which an overfit model fills with the same prefix.
  const b3 = decode({ iterDecodeWithBeam: 3 });
  const found = b3.filter((h, i) => h.some((x) => Array.from(x.tokens).join(' ') === refs[i])).length;
  assert.ok(found >= 7, `beam 3 candidates contain ${found}/8 references`);

  // With an autoregressive reranker (fairseq --iter-decode-with-external-reranker) the full length wins.
  const ar = trainReranker(100);
  const rr = decode({ iterDecodeWithBeam: 3, iterDecodeWithExternalReranker: true }, ar);
  assert.ok(exact(rr) >= 7, `beam 3 + AR rerank: ${exact(rr)}/8: ${show(rr)}`);

  // The default (adaptive) decoder never runs more than M + 1 passes.
  let passes = 0;
  const counting: MaskPredictModel<EncoderOut> = {
    generatorFamily: 'mask-predict',
    maxTargetPositions: model.maxTargetPositions,
    encode: (s, t) => model.encode(s, t),
    predictLengths: (e) => model.predictLengths(e),
    reorderEncoderOut: (e, i) => model.reorderEncoderOut(e, i),
    disposeEncoderOut: (e) => model.disposeEncoderOut(e),
    decodeLogProbs: (e, t) => {
      passes++;
      return model.decodeLogProbs(e, t);
    },
  };
  buildMaskPredictGenerator(counting, { tgtDict: dict, options: options({ iterDecodeMaxIter: 4, iterDecodeWithBeam: 3 }), seed: 1 }).generate(batch);
  assert.ok(passes >= 1 && passes <= 5, `${passes} passes`);
  ar.dispose();
  model.dispose();
});
