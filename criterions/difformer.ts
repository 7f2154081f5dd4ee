/**
 * The `difformer` criterion: the official training objective (zhjgao/difformer
 * `Difformer.forward` outputs scored by fairseq v0.10.2's `nat_loss`; reference-brief 1.4):
 *
 *   L = L_diff + L_anchor + lengthLossFactor * L_len
 *   L_diff   = mean over non-pad target positions and latent dims of (z0hat - z0)^2
 *              (z0 not detached: the MSE also moves the embedding table)
 *   L_anchor = nat_loss label smoothing on logits z0hat·Eᵀ over non-pad positions:
 *              (1 - eps) * mean NLL - eps * mean over (tokens x vocab) of log p
 *              = mean over tokens of (1 - eps) * nll + (eps / V) * sum_v (-log p_v)
 *   L_len    = cross-entropy of the length head (no smoothing), mean over sentences
 *
 * With `--rounding-loss` the CE term is computed on z0·Eᵀ instead (Diffusion-LM's rounding term;
 * logged under the same `word_ins` name). `sampleSize` is 1 because each term is already a mean.
 * Logged values (nats): loss, nll_loss (the CE term's NLL), diffusion, word_ins, length, each
 * term before its factor; `reduce` divides by the summed sample size and ln 2 as nat_loss's
 * reduce_metrics, and adds ppl = 2^nll_loss. An all-pad batch gives 0 for the token terms.
 * Like improved-diffusion's `mse_q0..q3`, the diffusion and CE terms are also logged per quarter
 * of the timestep range (`diffusion_q0..q3`, `word_ins_q0..q3`, t in [qT/4, (q+1)T/4)), token-
 * weighted over the log interval: they show whether the low-noise steps, which the sampler's last
 * steps rely on, are being learned. A quarter with no sentence in the interval is left out.
 *
 * Left out: nat_loss's soft-label targets and per-term factors other than the length factor.
 */
import * as tf from '@tensorflow/tfjs';
import { DifformerModel, type ForwardDraws } from '../models/difformer.js';
import type { Batch } from '../src/data/language_pair_dataset.js';
import { DifformerError } from '../src/errors.js';
import { tidyObject } from '../src/nn/params.js';
import { linear } from '../src/nn/linear.js';
import { boolFlag, floatFlag, type OptionTable } from '../src/options.js';
import type { CriterionComponent } from '../src/registry.js';
import type { Criterion, CriterionOutput, LogSums, TrainableModel } from '../src/train/types.js';
import { labelSmoothedNllLoss } from './label_smoothed_cross_entropy.js';

export interface DifformerCriterionOptions {
  /** nat_loss --label-smoothing on the anchor (or rounding) term. */
  labelSmoothing: number;
  /** CE on the true z0 instead of the prediction (Diffusion-LM's rounding loss). */
  roundingLoss: boolean;
}

/** The official scripts pass --label-smoothing 0.1. */
export const difformerCriterionDefaults: Readonly<DifformerCriterionOptions> = Object.freeze({
  labelSmoothing: 0.1,
  roundingLoss: false,
});

export const difformerCriterionOptionTable: OptionTable<DifformerCriterionOptions> = {
  labelSmoothing: floatFlag('--label-smoothing', 'label smoothing epsilon of the anchor loss', 'EPS'),
  roundingLoss: boolFlag('--rounding-loss', 'rounding loss on z0 (Diffusion-LM) instead of the anchor loss on z0hat'),
};

/** The loss terms of one batch, in nats; each is a mean. */
export interface DifformerLossTerms {
  loss: tf.Scalar;
  nllLoss: tf.Scalar;
  diffusion: tf.Scalar;
  wordIns: tf.Scalar;
  length: tf.Scalar;
  /** Per timestep quarter q: summed squared error, summed CE and non-pad token count. [4] each */
  quarters: { sqErr: tf.Tensor1D; ce: tf.Tensor1D; tokens: tf.Tensor1D };
}

/** Timestep quarter of each sentence as a one-hot [B, 4] float matrix. */
function quarterOneHot(t: Int32Array, numTimesteps: number): tf.Tensor2D {
  const m = new Float32Array(t.length * 4);
  t.forEach((ti, b) => (m[b * 4 + Math.min(3, Math.floor((4 * ti) / numTimesteps))] = 1));
  return tf.tensor2d(m, [t.length, 4]);
}

/** Flat row indices [N] of the non-pad entries of target [B, L] (typed array, row-major). */
export function nonPadRows(target: Int32Array, padIndex: number): Int32Array {
  let n = 0;
  for (let i = 0; i < target.length; i++) if (target[i] !== padIndex) n++;
  const out = new Int32Array(n);
  let k = 0;
  for (let i = 0; i < target.length; i++) if (target[i] !== padIndex) out[k++] = i;
  return out;
}

/**
 * Computes every term from the model's training forward. srcTokens [B, S], target [B, L] int32
 * (BOS y EOS, right-padded) and the same target as a typed array. Only non-pad positions go
 * through the V-wide output layer. `draws` fixes t / eps / the coin (tests, analyses).
 */
export function difformerLosses(
  model: DifformerModel,
  src: tf.Tensor2D,
  target: tf.Tensor2D,
  targetData: Int32Array,
  opts: DifformerCriterionOptions,
  training: boolean,
  draws: ForwardDraws = {},
): DifformerLossTerms {
  return tidyObject(() => {
    const out = model.forward(src, target, training, draws);
    const [b, l, d] = out.z0hat.shape;
    const ntokens = tf.maximum(tf.sum(out.mask), 1);

    // L_diff: per-element mean over non-pad positions.
    const sqPerSentence = tf.sum(tf.mul(tf.square(tf.sub(out.z0hat, out.z0)), tf.expandDims(out.mask, 2)), [1, 2]); // [B]
    const diffusion = tf.div(tf.sum(sqPerSentence), tf.mul(ntokens, d)) as tf.Scalar;
    const quarter = quarterOneHot(out.t, model.opts.diffusionSteps); // [B, 4]
    const byQuarter = (perSentence: tf.Tensor1D): tf.Tensor1D => tf.reshape(tf.matMul(tf.expandDims(perSentence, 0), quarter), [4]);
    let cePerSentence: tf.Tensor1D = tf.zeros([b]);

    // L_anchor (or rounding): label-smoothed CE over the non-pad rows only.
    const rows = nonPadRows(targetData, model.padIndex);
    let wordIns = tf.scalar(0);
    let nllLoss = tf.scalar(0);
    if (rows.length > 0) {
      const idx = tf.tensor1d(rows, 'int32');
      const z = tf.gather(tf.reshape(opts.roundingLoss ? out.z0 : out.z0hat, [b * l, d]), idx) as tf.Tensor2D; // [N, D]
      const logits = linear(z, model.params.get('decoder.embed_tokens.weight') as tf.Tensor2D); // [N, V]
      const tgt = tf.gather(tf.reshape(target, [b * l]), idx) as tf.Tensor1D; // [N]
      const r = labelSmoothedNllLoss(logits, tgt, opts.labelSmoothing, undefined, { reduce: false }); // [N] each
      wordIns = tf.div(tf.sum(r.loss), rows.length);
      nllLoss = tf.div(tf.sum(r.nllLoss), rows.length);
      const sentenceOfRow = tf.tensor1d(Int32Array.from(rows, (i) => Math.floor(i / l)), 'int32');
      cePerSentence = tf.unsortedSegmentSum(r.loss, sentenceOfRow, b) as tf.Tensor1D;
    }

    // L_len: plain CE, mean over sentences.
    const len = labelSmoothedNllLoss(out.lengthLogits, out.lengthTarget, 0);
    const length = tf.div(len.loss, b) as tf.Scalar;

    const loss = tf.addN([diffusion, wordIns, tf.mul(length, model.opts.lengthLossFactor)]) as tf.Scalar;
    const quarters = {
      sqErr: byQuarter(sqPerSentence as tf.Tensor1D),
      ce: byQuarter(cePerSentence),
      tokens: byQuarter(tf.sum(out.mask, 1)),
    };
    return { loss, nllLoss: nllLoss as tf.Scalar, diffusion, wordIns: wordIns as tf.Scalar, length, quarters };
  });
}

export class DifformerCriterion implements Criterion<DifformerModel> {
  readonly name = 'difformer';
  constructor(readonly opts: DifformerCriterionOptions) {}

  check(model: TrainableModel): asserts model is DifformerModel {
    if (!(model instanceof DifformerModel)) {
      throw new DifformerError('DIFFORMER_BAD_OPTION', `--criterion difformer trains only the difformer model (--arch difformer*); got ${model.constructor.name}`);
    }
  }

  forward(model: DifformerModel, batch: Batch, training: boolean): CriterionOutput {
    const terms = tf.tidy(() => {
      const src = tf.tensor2d(batch.srcTokens, [batch.bsz, batch.srcLen], 'int32');
      const tgt = tf.tensor2d(batch.target, [batch.bsz, batch.tgtLen], 'int32');
      const t = difformerLosses(model, src, tgt, batch.target, this.opts, training);
      const q = t.quarters;
      const mseSum = tf.div(q.sqErr, model.latentDim); // per-token means over the latent dims, summed
      return [t.loss, t.nllLoss, t.diffusion, t.wordIns, t.length, ...tf.unstack(mseSum), ...tf.unstack(q.ce), ...tf.unstack(q.tokens)] as tf.Scalar[];
    });
    const [loss, nll, diffusion, wordIns, length, ...q] = terms as [tf.Scalar, tf.Scalar, tf.Scalar, tf.Scalar, tf.Scalar, ...tf.Scalar[]];
    const logging: Record<string, tf.Scalar> = { loss, nll_loss: nll, diffusion, word_ins: wordIns, length };
    for (let i = 0; i < 4; i++) {
      logging[`mse_sum_q${i}`] = q[i]!;
      logging[`ce_sum_q${i}`] = q[4 + i]!;
      logging[`ntokens_q${i}`] = q[8 + i]!;
    }
    return { loss, sampleSize: 1, logging };
  }

  reduce(logs: LogSums): Record<string, number> {
    const n = Math.max(1, logs.sampleSize);
    const base2 = (k: string): number => (logs.values[k] ?? 0) / n / Math.LN2;
    const out: Record<string, number> = {};
    for (const k of ['loss', 'nll_loss', 'diffusion', 'word_ins', 'length']) out[k] = base2(k);
    out.ppl = 2 ** out.nll_loss!;
    // Per quarter: sums over the interval divided by its own token count (not by batches).
    for (let i = 0; i < 4; i++) {
      const n = logs.values[`ntokens_q${i}`] ?? 0;
      if (n <= 0) continue;
      out[`diffusion_q${i}`] = (logs.values[`mse_sum_q${i}`] ?? 0) / n / Math.LN2;
      out[`word_ins_q${i}`] = (logs.values[`ce_sum_q${i}`] ?? 0) / n / Math.LN2;
    }
    return out;
  }
}

export const difformerCriterionComponent: CriterionComponent<DifformerCriterionOptions, Criterion<DifformerModel>> = {
  name: 'difformer',
  description: "Difformer's objective: latent MSE + anchor loss + length loss (nat_loss semantics)",
  options: difformerCriterionOptionTable,
  defaults: difformerCriterionDefaults,
  build: (opts) => new DifformerCriterion(opts),
};
