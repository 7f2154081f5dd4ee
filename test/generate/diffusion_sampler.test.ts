import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs';
import { initBackend } from '../../src/backend.js';
import { sliceBatch } from '../../src/data/language_pair_dataset.js';
import { rotateSources, sourceReliance } from '../../src/metrics/source_reliance.js';
import { DifformerError } from '../../src/errors.js';
import {
  buildDiffusionGenerator,
  diffusionGenerationDefaults,
  diffusionGenerationOptionTable,
  type ArScorer,
  type DiffusionGenerationOptions,
} from '../../src/generate/diffusion_sampler.js';
import { bleuMbrScores, candidateLengths, rankCandidates, toHypothesisTokens } from '../../src/generate/candidates.js';
import { postProcess } from '../../src/data/post_process.js';
import type { DifformerModel } from '../../models/difformer.js';
import { gettextPairs, gettextPairsOfTargetLength, joinedDictionary, makeBatch, referenceTokens, tinyModel, trainSteps } from '../models/difformer_fixtures.js';

await initBackend({ backend: 'wasm' });

const pairs = gettextPairs(8, 6);
const dict = joinedDictionary(pairs);
const batch = makeBatch(dict, pairs);
const options = (o: Partial<DiffusionGenerationOptions> = {}): DiffusionGenerationOptions => ({ ...diffusionGenerationDefaults, ...o });

/**
 * Wraps denoise/predictLengths to record what the sampler asks of the model. An untrained length
 * head predicts anything up to ~130 tokens, so by default the reference lengths are returned
 * instead (keeps these tests fast; the overfit test uses the real head).
 */
function spy(model: DifformerModel, lengths: Int32Array | null = batch.tgtLengths) {
  const calls: { rows: number[]; tModel: number }[] = [];
  const predicted: Int32Array[] = [];
  const denoise = model.denoise.bind(model);
  const predictLengths = model.predictLengths.bind(model);
  model.denoise = (zt, tModel, mask, enc, prev, training) => {
    calls.push({ rows: Array.from(tf.tidy(() => tf.sum(mask, 1)).dataSync()), tModel: typeof tModel === 'number' ? tModel : tModel[0]! });
    return denoise(zt, tModel, mask, enc, prev, training);
  };
  model.predictLengths = (e) => {
    const p = lengths === null ? predictLengths(e) : Int32Array.from(lengths);
    predicted.push(p);
    return p;
  };
  return { calls, predicted };
}

test('options: defaults and flags', () => {
  assert.equal(diffusionGenerationDefaults.decodingSteps, 20);
  assert.equal(diffusionGenerationDefaults.decodingRescalingFactor, 1);
  assert.equal(diffusionGenerationDefaults.candidateSelection, 'model');
  assert.deepEqual(Object.keys(diffusionGenerationOptionTable).sort(), Object.keys(diffusionGenerationDefaults).sort());
  assert.equal(diffusionGenerationOptionTable.lengthBeamSize?.flag, '--length-beam-size');
  assert.equal(diffusionGenerationOptionTable.decodingEarlyStopping?.flag, '--decoding-early-stopping');
});

test('candidate lengths: sentence-major, then length, then noise; L*-floor(b1/2) .. ; at least 2', () => {
  assert.deepEqual(Array.from(candidateLengths([5, 9], 3, 2)), [4, 4, 5, 5, 6, 6, 8, 8, 9, 9, 10, 10]);
  assert.deepEqual(Array.from(candidateLengths([1], 5, 1)), [2, 2, 2, 3, 4]);
  assert.deepEqual(Array.from(candidateLengths([6], 4, 1)), [4, 5, 6, 7]); // even b1: asymmetric, as fairseq
  assert.deepEqual(Array.from(candidateLengths([6], 3, 1, 6)), [5, 6, 6]);
});

test('the generator decodes all b1*b2 candidates of all sentences in one batch, in order', () => {
  const model = tinyModel(dict);
  const { calls, predicted } = spy(model);
  const gen = buildDiffusionGenerator(model, { tgtDict: dict, options: options({ decodingSteps: 3, lengthBeamSize: 3, noiseBeamSize: 2 }), seed: 1 });
  assert.equal(gen.beamLabel, 6);
  const hypos = gen.generate(batch);
  assert.equal(hypos.length, batch.bsz);
  assert.ok(hypos.every((h) => h.length === 6));
  assert.equal(calls.length, 3);
  const want = Array.from(candidateLengths(predicted[0]!, 3, 2));
  for (const c of calls) assert.deepEqual(c.rows, want, 'one batch of bsz*6 rows with the candidate lengths');
  // Network time follows the respaced chain, rescaled: tau = 1999, 999/1000, 0 -> t*1000/2000.
  assert.deepEqual(calls.map((c) => c.tModel), [999.5, 500, 0]);
  for (const h of hypos.flat()) {
    assert.equal(h.tokens[h.tokens.length - 1], dict.eosIndex, 'hypotheses end with EOS');
    assert.equal(h.tokens.length, h.positionalScores.length);
    assert.notEqual(h.tokens[0], dict.bosIndex);
  }
  for (const h of hypos) for (let i = 1; i < h.length; i++) assert.ok(h[i - 1]!.score >= h[i]!.score, 'best first');
  model.dispose();
});

test('early stopping runs K - E network evaluations', () => {
  const model = tinyModel(dict);
  const { calls } = spy(model);
  const gen = buildDiffusionGenerator(model, { tgtDict: dict, options: options({ decodingSteps: 20, decodingEarlyStopping: 5 }), seed: 1 });
  gen.generate(batch);
  assert.equal(calls.length, 15);
  // Last visited step is tau_5 = 526 of T = 2000.
  assert.equal(calls[calls.length - 1]!.tModel, 263);
  assert.throws(
    () => buildDiffusionGenerator(model, { tgtDict: dict, options: options({ decodingSteps: 5, decodingEarlyStopping: 5 }), seed: 1 }),
    (e: unknown) => e instanceof DifformerError && e.code === 'DIFFORMER_BAD_OPTION',
  );
  model.dispose();
});

test('deterministic under the seed; another seed differs; tensors are released', () => {
  const model = tinyModel(dict);
  spy(model);
  const run = (seed: number) => {
    const gen = buildDiffusionGenerator(model, { tgtDict: dict, options: options({ decodingSteps: 4, lengthBeamSize: 2, noiseBeamSize: 2 }), seed });
    return gen.generate(batch).map((h) => h.map((x) => [Array.from(x.tokens), x.score]));
  };
  const before = tf.memory().numTensors;
  const a = run(7);
  assert.equal(tf.memory().numTensors, before, 'no tensors left behind');
  assert.deepEqual(run(7), a);
  assert.notDeepEqual(run(8), a);
  model.dispose();
});

test('history: one token row per network call for every sentence', () => {
  const model = tinyModel(dict);
  spy(model);
  const gen = buildDiffusionGenerator(model, { tgtDict: dict, options: options({ decodingSteps: 6, decodingEarlyStopping: 2, retainIterHistory: true, clamping: true }), seed: 1 });
  const r = gen.generateWithHistory(batch);
  assert.equal(r.history?.length, batch.bsz);
  assert.ok(r.history!.every((h) => h.length === 4));
  // The last history row is the output.
  r.hypos.forEach((h, i) => assert.deepEqual(Array.from(r.history![i]![3]!), Array.from(h[0]!.tokens)));
  const plain = buildDiffusionGenerator(model, { tgtDict: dict, options: options({ decodingSteps: 2 }), seed: 1 });
  assert.equal(plain.generateWithHistory(batch).history, undefined);
  model.dispose();
});

test('candidate selection: ar-rerank needs a scorer and picks its best; bleu-mbr prefers the consensus', () => {
  const model = tinyModel(dict);
  spy(model);
  assert.throws(
    () => buildDiffusionGenerator(model, { tgtDict: dict, options: options({ candidateSelection: 'ar-rerank' }), seed: 1 }),
    (e: unknown) => e instanceof DifformerError && e.code === 'DIFFORMER_BAD_OPTION' && /--path/.test(e.message),
  );
  const seen: { src: number[][]; prev: number[][] }[] = [];
  const scorer: ArScorer = {
    scoreCandidates(src, prev) {
      seen.push({ src: src.arraySync() as number[][], prev: prev.arraySync() as number[][] });
      // Prefer the longest candidate: score = number of non-pad tokens.
      return Float32Array.from(prev.arraySync() as number[][], (row) => row.filter((t) => t !== dict.padIndex).length);
    },
  };
  const gen = buildDiffusionGenerator(model, { tgtDict: dict, options: options({ decodingSteps: 2, lengthBeamSize: 3, candidateSelection: 'ar-rerank' }), seed: 1, reranker: scorer });
  const hypos = gen.generate(batch);
  assert.equal(seen.length, 1);
  assert.equal(seen[0]!.prev.length, batch.bsz * 3);
  assert.ok(seen[0]!.prev.every((row) => row[0] === dict.eosIndex), 'EOS at position 0');
  assert.deepEqual(seen[0]!.src[3], Array.from(batch.srcTokens.subarray(batch.srcLen, 2 * batch.srcLen)), 'candidate 3 belongs to sentence 1');
  for (const h of hypos) assert.equal(h[0]!.score, Math.max(...h.map((x) => x.score)));

  // BLEU-MBR over strings: the candidate agreeing with the others wins; empty ones keep their model score.
  const s = bleuMbrScores(['the cat sat on the mat', 'the cat sat on the mat', 'a dog ran far away', ''], [-1, -2, -3, -0.5]);
  assert.ok(s[0]! > s[2]! && s[1]! > s[2]!);
  assert.equal(s[3], -0.5);
  assert.deepEqual(rankCandidates([1, 3, 3, 0]), [1, 2, 0, 3]);
  // candidates are compared as words (--remove-bpe), as the official bleu_rerank
  assert.equal(postProcess('un@@ related thing@@', 'subword_nmt'), 'unrelated thing'); // fairseq: (s + ' ').replace('@@ ', '')
  assert.equal(postProcess('\u2581the \u2581c at \u2581sat', 'sentencepiece'), 'the cat sat');
  assert.equal(dict.string([dict.unkIndex, dict.eosIndex], { unkString: 'UNKNOWNTOKENINHYP' }), 'UNKNOWNTOKENINHYP');
  const mbr = buildDiffusionGenerator(model, { tgtDict: dict, options: options({ decodingSteps: 2, noiseBeamSize: 3, candidateSelection: 'bleu-mbr' }), seed: 1, removeBpe: 'sentencepiece' });
  assert.equal(mbr.generate(batch).length, batch.bsz);
  model.dispose();
});

test('hypothesis tokens: leading BOS and trailing pads stripped, EOS kept or appended', () => {
  const ids = { bos: 0, pad: 1, eos: 2 };
  const raw = (t: number[]) => ({ tokens: Int32Array.from(t), scores: Float32Array.from(t, (_, i) => -i), score: 0 });
  assert.deepEqual(Array.from(toHypothesisTokens(raw([0, 5, 6, 2]), ids).tokens), [5, 6, 2]);
  assert.deepEqual(Array.from(toHypothesisTokens(raw([0, 5, 6, 2]), ids).positionalScores), [-1, -2, -3]);
  const r = toHypothesisTokens(raw([5, 6, 1, 1]), ids);
  assert.deepEqual(Array.from(r.tokens), [5, 6, 2]);
  assert.deepEqual(Array.from(r.positionalScores), [-0, -1, 0]);
});

test('a tiny Difformer overfits real sentence pairs and decodes them back with K = 20 and K = 2', () => {
  const model = tinyModel(dict, { dropout: 0 });
  const losses = trainSteps(model, batch, { labelSmoothing: 0.1, roundingLoss: false }, 300, 3e-3);
  assert.ok(losses[losses.length - 1]! < losses[0]! / 4, `loss ${losses[0]} -> ${losses[losses.length - 1]}`);
  const refs = referenceTokens(batch, dict);
  for (const K of [20, 2]) {
    const gen = buildDiffusionGenerator(model, { tgtDict: dict, options: options({ decodingSteps: K }), seed: 3 });
    const hypos = gen.generate(batch);
    const exact = hypos.filter((h, i) => Array.from(h[0]!.tokens).join(' ') === Array.from(refs[i]!).join(' ')).length;
    assert.ok(exact >= 7, `K=${K}: ${exact}/8 exact: ${hypos.map((h) => dict.string(h[0]!.tokens)).join(' | ')}`);
  }
  model.dispose();
});

test('the denoiser reads the source: equal-length targets decode back from their own sources, and follow swapped ones', () => {
  // Every target has 3 words, so position and length cannot tell the pairs apart: only the
  // source (cross-attention) can. A decoder that ignores it would print one target for all.
  const same = gettextPairsOfTargetLength(8, 3, 8);
  assert.equal(same.tgt.length, 8);
  const d = joinedDictionary(same);
  const b = makeBatch(d, same);
  const model = tinyModel(d, { dropout: 0 });
  trainSteps(model, b, { labelSmoothing: 0.1, roundingLoss: false }, 300, 3e-3);
  const refs = referenceTokens(b, d).map((r) => Array.from(r).join(' '));
  const gen = buildDiffusionGenerator(model, { tgtDict: d, options: options({ decodingSteps: 20 }), seed: 3 });
  const own = gen.generate(b).map((h) => Array.from(h[0]!.tokens).join(' '));
  const exact = own.filter((h, i) => h === refs[i]).length;
  assert.ok(exact >= 6, `${exact}/8 exact: ${own.map((h) => d.string(Int32Array.from(h.split(' ').map(Number)))).join(' | ')}`);
  // rotate the sources by one sentence: the outputs should rotate with them
  const rotated = { ...b, srcTokens: rotateSources(b) };
  const swapped = gen.generate(rotated).map((h) => Array.from(h[0]!.tokens).join(' '));
  const follow = swapped.filter((h, i) => h === refs[(i + 1) % 8]).length;
  assert.ok(follow >= 6, `${follow}/8 follow the swapped source`);
  // difformer-score --source-reliance on the same model: from pure noise (t = T-1) only the
  // right source gives the right tokens; from the clean target (t = 0) the right one does too
  const before = tf.memory().numTensors;
  const [noisy, clean] = sourceReliance(model, b, [1999, 0], { bos: d.bosIndex, eos: d.eosIndex }).map((r) => ({ right: r.right / r.tokens, wrong: r.wrong / r.tokens, tokens: r.tokens }));
  assert.equal(tf.memory().numTensors, before);
  assert.equal(noisy!.tokens, 8 * 3, 'the 3 words of each target, BOS and EOS left out');
  assert.ok(noisy!.right >= 0.8 && noisy!.wrong <= noisy!.right - 0.3, `t=1999: ${noisy!.right} right vs ${noisy!.wrong} wrong source`);
  assert.ok(clean!.right >= 0.9, `t=0: ${clean!.right} right vs ${clean!.wrong} wrong source`);
  model.dispose();
});

test('a batch whose candidates exceed maxCandidateTokens is decoded in sentence blocks, in order', () => {
  const model = tinyModel(dict);
  const { calls } = spy(model, null); // the model's own length predictions, per block
  const opts = options({ decodingSteps: 2, lengthBeamSize: 3, noiseBeamSize: 2 });
  // one sentence per block: 6 candidates x (srcLen + 3 + 8) positions each exceed the limit
  const gen = buildDiffusionGenerator(model, { tgtDict: dict, options: opts, seed: 1, maxCandidateTokens: 1 });
  const before = tf.memory().numTensors;
  const hypos = gen.generate(batch);
  assert.equal(tf.memory().numTensors, before);
  assert.equal(hypos.length, batch.bsz);
  assert.ok(hypos.every((h) => h.length === 6));
  assert.equal(calls.length, 2 * batch.bsz, `K calls per block, one block per sentence (${calls.length})`);
  for (const c of calls) assert.equal(c.rows.length, 6);
  // each block is that sentence alone: the same hypotheses as generating it as its own batch
  const single = buildDiffusionGenerator(model, { tgtDict: dict, options: opts, seed: 1 });
  const first = single.generate(sliceBatch(batch, 0, 1));
  const fresh = buildDiffusionGenerator(model, { tgtDict: dict, options: opts, seed: 1, maxCandidateTokens: 1 });
  assert.deepEqual(fresh.generate(batch)[0]!.map((h) => Array.from(h.tokens)), first[0]!.map((h) => Array.from(h.tokens)));
  model.dispose();
});
