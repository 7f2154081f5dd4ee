/**
 * Beam search with --no-repeat-ngram-size (fairseq's NGramRepeatBlock), on a toy decoder whose
 * next-token distribution depends only on the last token and that prefers to alternate 4 5 4 5.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs';
import { initBackend } from '../../src/backend.js';
import { generationDefaults } from '../../src/generate/generator.js';
import { beamSearch, repeatedNgramBans, type IncrementalModel } from '../../src/generate/sequence_generator.js';

await initBackend({ backend: 'wasm' });
const ids = { bos: 0, pad: 1, eos: 2, unk: 3 };
const V = 6;

// row = previous token: after EOS (the start) and after 5 prefer 4; after 4 prefer 5; EOS unlikely
const probs = [
  [0, 0, 0.1, 0, 0.6, 0.3],
  [0, 0, 0.1, 0, 0.6, 0.3],
  [0, 0, 0.1, 0, 0.6, 0.3],
  [0, 0, 0.1, 0, 0.6, 0.3],
  [0, 0, 0.1, 0, 0.3, 0.6],
  [0, 0, 0.1, 0, 0.6, 0.3],
];
const table = tf.keep(tf.log(tf.tensor2d(probs)));

const toy: IncrementalModel<tf.Tensor2D, tf.Tensor2D> = {
  encode: (src) => tf.clone(src),
  initDecoderState: (enc) => tf.zeros([enc.shape[0], 1]),
  decodeStep: (state, tokens) => ({ logProbs: tf.tidy(() => tf.gather(table, tokens.reshape([-1])) as tf.Tensor2D), state }),
  reorderState: (state, indices) => {
    const next = tf.gather(state, indices);
    state.dispose();
    return next;
  },
};

function decode(beam: number, noRepeatNgramSize: number): number[] {
  const src = tf.tensor2d([[4, 2]], [1, 2], 'int32');
  const before = tf.memory().numTensors;
  const hypos = beamSearch(toy, (e, i) => tf.gather(e, i), (e) => e.dispose(), (s) => s.dispose(), src, Int32Array.from([2]), ids, V, {
    ...generationDefaults,
    beam,
    maxLenB: 8,
    maxPositions: 64,
    noRepeatNgramSize,
  });
  assert.equal(tf.memory().numTensors, before, 'no tensors left behind');
  src.dispose();
  return Array.from(hypos[0]![0]!.tokens);
}

test('repeatedNgramBans bans the tokens that would complete an n-gram already in the row', () => {
  const bans = repeatedNgramBans([[4, 5, 4], [4, 5], []], 2, V)!;
  // row 0 ends in 4; "4 5" occurred, so 5 is banned there and nothing else
  assert.deepEqual(Array.from(bans.subarray(0, V)), [0, 0, 0, 0, 0, -Infinity]);
  assert.deepEqual(Array.from(bans.subarray(V, 3 * V)), new Array(2 * V).fill(0));
  assert.equal(repeatedNgramBans([[4, 5, 6], []], 2, 8), undefined);
  // n = 1: no token twice; n = 3 on "4 5 4 5": the trigram "5 4 5" is new, "4 5 4" would repeat
  assert.deepEqual(Array.from(repeatedNgramBans([[4, 5]], 1, V)!), [0, 0, 0, 0, -Infinity, -Infinity]);
  assert.deepEqual(Array.from(repeatedNgramBans([[4, 5, 4, 5]], 3, V)!), [0, 0, 0, 0, -Infinity, 0]);
});

test('beam search with --no-repeat-ngram-size never repeats an n-gram', () => {
  // unblocked, greedy alternates up to the length limit
  assert.deepEqual(decode(1, 0), [4, 5, 4, 5, 4, 5, 4, 5, 2]);
  // bigrams blocked: 4 5 4, then "4 5" is banned -> 4; then "4 5" and "4 4" are banned -> EOS
  assert.deepEqual(decode(1, 2), [4, 5, 4, 4, 2]);
  for (const beam of [1, 3]) {
    for (const n of [2, 3]) {
      const toks = decode(beam, n).slice(0, -1);
      const seen = new Set<string>();
      for (let i = 0; i + n <= toks.length; i++) {
        const g = toks.slice(i, i + n).join(' ');
        assert.ok(!seen.has(g), `beam ${beam}, n ${n}: "${g}" twice in ${toks.join(' ')}`);
        seen.add(g);
      }
    }
  }
});
