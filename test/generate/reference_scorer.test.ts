/**
 * --score-reference: teacher-forced log-probs of a given target must equal what incremental beam
 * search assigned to the same tokens (one decoder, two ways of running it), position by position.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs';
import { initBackend } from '../../src/backend.js';
import type { Batch } from '../../src/data/language_pair_dataset.js';
import { buildBeamSearchGenerator, generationDefaults } from '../../src/generate/generator.js';
import { buildReferenceScorer } from '../../src/generate/reference_scorer.js';
import { AutoregressiveTransformer } from '../../models/transformer_component.js';
import { resolveTransformerOptions } from '../../models/transformer.js';
import { gettextPairs, joinedDictionary, makeBatch } from '../models/difformer_fixtures.js';

await initBackend({ backend: 'wasm' });
const pairs = gettextPairs(6, 8);
const dict = joinedDictionary(pairs);
const batch = makeBatch(dict, pairs);

test('scoring beam search output as the reference gives back its positional scores', () => {
  const model = new AutoregressiveTransformer(resolveTransformerOptions('transformer_tiny', { dropout: 0, shareAllEmbeddings: true }), { src: dict, tgt: dict }, 3);
  const hypos = buildBeamSearchGenerator(model, dict, { ...generationDefaults, beam: 1, maxLenB: 6 }).generate(batch).map((h) => h[0]!);
  // a batch whose targets are those hypotheses (EOS-terminated), teacher-forced from EOS
  const w = Math.max(...hypos.map((h) => h.tokens.length));
  const target = new Int32Array(batch.bsz * w).fill(dict.padIndex);
  const prev = new Int32Array(batch.bsz * w).fill(dict.padIndex);
  hypos.forEach((h, i) => {
    target.set(h.tokens, i * w);
    prev[i * w] = dict.eosIndex;
    prev.set(h.tokens.subarray(0, h.tokens.length - 1), i * w + 1);
  });
  const tgtLengths = Int32Array.from(hypos, (h) => h.tokens.length);
  const forced: Batch = { ...batch, target, prevOutputTokens: prev, tgtLen: w, tgtLengths, ntokens: tgtLengths.reduce((a, b) => a + b, 0) };
  const before = tf.memory().numTensors;
  const scored = buildReferenceScorer(model, 1).generate(forced).map((h) => h[0]!);
  assert.equal(tf.memory().numTensors, before, 'no tensors left behind');
  scored.forEach((s, i) => {
    assert.deepEqual(Array.from(s.tokens), Array.from(hypos[i]!.tokens));
    s.positionalScores.forEach((v, j) => assert.ok(Math.abs(v - hypos[i]!.positionalScores[j]!) < 1e-4, `sentence ${i} token ${j}: ${v} vs ${hypos[i]!.positionalScores[j]}`));
    const mean = s.positionalScores.reduce((a, v) => a + v, 0) / s.tokens.length;
    assert.ok(Math.abs(s.score - mean) < 1e-6);
  });
  assert.throws(() => buildReferenceScorer(model, 1).generate({ ...batch, tgtLen: 0 }), /--score-reference needs references/);
  model.dispose();
});
