/**
 * fairseq-generate's --score-reference (its SequenceScorer): no search; each reference is scored
 * by an autoregressive model under teacher forcing. The H-/P- lines then hold the reference and
 * its per-token log-probs, and the hypothesis score is their mean (length-normalized, as fairseq).
 */
import * as tf from '@tensorflow/tfjs';
import type { Batch } from '../data/language_pair_dataset.js';
import { DifformerError } from '../errors.js';
import type { SequenceGenerator } from './generator.js';

export interface ReferenceScoringModel {
  /** [N, L] log-prob of target[n, j] given the source and prevOutputTokens[n, ..j]; 0 at pad. */
  targetLogProbs(srcTokens: tf.Tensor2D, prevOutputTokens: tf.Tensor2D, target: tf.Tensor2D): Float32Array;
}

export function isReferenceScorer(m: unknown): m is ReferenceScoringModel {
  return typeof (m as Partial<ReferenceScoringModel>).targetLogProbs === 'function';
}

export function buildReferenceScorer(model: ReferenceScoringModel, beamLabel: number): SequenceGenerator {
  return {
    beamLabel,
    generate(batch: Batch) {
      if (batch.tgtLen === 0) throw new DifformerError('DIFFORMER_BAD_OPTION', '--score-reference needs references: this split has no targets');
      const [n, l] = [batch.bsz, batch.tgtLen];
      const src = tf.tensor2d(batch.srcTokens, [n, batch.srcLen], 'int32');
      const prev = tf.tensor2d(batch.prevOutputTokens, [n, l], 'int32');
      const tgt = tf.tensor2d(batch.target, [n, l], 'int32');
      let lp: Float32Array;
      try {
        lp = model.targetLogProbs(src, prev, tgt);
      } finally {
        tf.dispose([src, prev, tgt]);
      }
      return Array.from({ length: n }, (_, b) => {
        const len = batch.tgtLengths[b]!;
        const positionalScores = lp.slice(b * l, b * l + len);
        const score = positionalScores.reduce((a, v) => a + v, 0) / Math.max(1, len);
        return [{ tokens: batch.target.slice(b * l, b * l + len), score, positionalScores }];
      });
    },
  };
}
