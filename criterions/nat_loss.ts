/**
 * fairseq v0.10.2's `nat_loss` criterion (LabelSmoothedDualImitationCriterion,
 * `fairseq/criterions/nat_loss.py`; reference-brief 3.1): a NAT model returns named loss terms,
 * each scored on the positions the model selected, and the loss is their factor-weighted sum.
 *
 * Per term with logits over K classes at N selected positions (log-probs lp = log_softmax):
 *
 *   nll  = mean over the N positions of -lp[target]
 *   loss = (1 - eps) * nll - eps * mean over (N x K) of lp          (smoothed terms, eps > 0)
 *        = mean over positions of (1 - eps) * nll_i + (eps / K) * sum_k (-lp_k)
 *   loss = nll                                                       (otherwise)
 *   an empty selection gives 0
 *
 * total = sum_terms factor * loss; `nll_loss` = sum of the nll of terms flagged `nllLoss`.
 * `sampleSize` is 1 (each term is already a mean; no further normalisation of the gradient).
 * Logged (nats): loss, nll_loss, and each term under its name BEFORE its factor (fairseq logs
 * `<name>-loss` = loss / factor and strips the suffix in reduce_metrics). `reduce` divides the
 * summed values by the summed sample size and ln 2, and adds ppl = 2^loss (fairseq derives nat_loss's
 * ppl from `loss`, not from nll_loss).
 *
 * For CMLM (models/cmlm.ts) the terms are `word_ins` (smoothed CE at positions whose decoder input
 * is <unk>) and `length` (plain CE of the length head, mean over sentences, factor
 * --length-loss-factor). The model applies the position mask before its output layer, so only the
 * scored rows are projected to the vocabulary.
 *
 * Divergences: a term's logged value is computed directly (fairseq divides loss by factor, which
 * is NaN for a zero factor). Left out: soft-label (KL) targets and precomputed `loss` terms.
 */
import * as tf from '@tensorflow/tfjs';
import type { Batch } from '../src/data/language_pair_dataset.js';
import { DifformerError } from '../src/errors.js';
import { tidyObject } from '../src/nn/params.js';
import { floatFlag, type OptionTable } from '../src/options.js';
import type { CriterionComponent } from '../src/registry.js';
import type { Criterion, CriterionOutput, LogSums, TrainableModel } from '../src/train/types.js';
import { labelSmoothedNllLoss } from './label_smoothed_cross_entropy.js';

export interface NatLossOptions {
  /** --label-smoothing: eps for the terms flagged `smoothed`; 0 means plain cross-entropy. */
  labelSmoothing: number;
}

/** fairseq's default (the CMLM recipe passes --label-smoothing 0.1). */
export const natLossDefaults: Readonly<NatLossOptions> = Object.freeze({ labelSmoothing: 0 });

export const natLossOptionTable: OptionTable<NatLossOptions> = {
  labelSmoothing: floatFlag('--label-smoothing', 'epsilon for label smoothing of the word terms (0 = none)', 'EPS'),
};

/** One loss term of a NAT model's output (fairseq's {out, tgt, mask, ls, factor, nll_loss} dict). */
export interface NatLossTerm {
  /** Logits of the selected positions only, [N, K]; null when nothing is selected (the term is 0). */
  out: tf.Tensor2D | null;
  /** Target classes of those positions, [N] int32. */
  tgt: tf.Tensor1D | null;
  /** Apply the criterion's --label-smoothing (fairseq's `ls`). */
  smoothed: boolean;
  /** Weight in the total loss (the term is logged before it). */
  factor: number;
  /** Adds to the logged nll_loss. */
  nllLoss: boolean;
}

/** Terms by name (`word_ins`, `length`, ...), in logging order. */
export type NatLossOutputs = Record<string, NatLossTerm>;

/** What nat_loss trains: a model whose training forward returns named terms. */
export interface NatLossModel extends TrainableModel {
  natForward(batch: Batch, training: boolean): NatLossOutputs;
}

/** fairseq's _compute_loss (before the factor): {loss, nllLoss} means over the N rows; 0 when N = 0. */
export function natTermLoss(logits: tf.Tensor2D | null, target: tf.Tensor1D | null, epsilon: number): { loss: tf.Scalar; nllLoss: tf.Scalar } {
  return tidyObject(() => {
    if (logits === null || target === null || logits.shape[0] === 0) return { loss: tf.scalar(0), nllLoss: tf.scalar(0) };
    const n = logits.shape[0];
    const r = labelSmoothedNllLoss(logits, target, epsilon); // sums over the rows
    return { loss: tf.div(r.loss, n) as tf.Scalar, nllLoss: tf.div(r.nllLoss, n) as tf.Scalar };
  });
}

const RESERVED = new Set(['loss', 'nll_loss']);

export class NatLossCriterion implements Criterion<NatLossModel> {
  readonly name = 'nat_loss';
  constructor(readonly opts: NatLossOptions) {}

  check(model: TrainableModel): asserts model is NatLossModel {
    if (typeof (model as Partial<NatLossModel>).natForward !== 'function') {
      const family = (model as { generatorFamily?: string }).generatorFamily;
      const hint = family === 'diffusion' ? 'use --criterion difformer' : family === 'autoregressive' ? 'use --criterion label_smoothed_cross_entropy' : 'pick the criterion of your model';
      throw new DifformerError('DIFFORMER_BAD_OPTION', `--criterion nat_loss trains non-autoregressive models with a natForward (--arch cmlm_*); got ${model.constructor.name}: ${hint}`);
    }
  }

  /** The terms of one batch in nats: total loss, nll_loss and each term before its factor. */
  losses(model: NatLossModel, batch: Batch, training: boolean): Record<string, tf.Scalar> {
    return tidyObject(() => {
      const terms = model.natForward(batch, training);
      const logged: Record<string, tf.Scalar> = {};
      const weighted: tf.Scalar[] = [];
      const nlls: tf.Scalar[] = [];
      for (const [name, term] of Object.entries(terms)) {
        if (RESERVED.has(name)) throw new Error(`nat_loss: a term may not be named '${name}'`);
        const r = natTermLoss(term.out, term.tgt, term.smoothed ? this.opts.labelSmoothing : 0);
        logged[name] = r.loss;
        weighted.push(term.factor === 1 ? r.loss : (tf.mul(r.loss, term.factor) as tf.Scalar));
        if (term.nllLoss) nlls.push(r.nllLoss);
      }
      const loss = (weighted.length > 0 ? tf.addN(weighted) : tf.scalar(0)) as tf.Scalar;
      const nll = (nlls.length > 0 ? tf.addN(nlls) : tf.scalar(0)) as tf.Scalar;
      return { loss, nll_loss: nll, ...logged };
    });
  }

  forward(model: NatLossModel, batch: Batch, training: boolean): CriterionOutput {
    const logging = this.losses(model, batch, training);
    return { loss: logging.loss!, sampleSize: 1, logging };
  }

  reduce(logs: LogSums): Record<string, number> {
    const n = Math.max(1, logs.sampleSize);
    const out: Record<string, number> = {};
    for (const [k, v] of Object.entries(logs.values)) out[k] = v / n / Math.LN2;
    out.loss ??= 0;
    out.nll_loss ??= 0;
    out.ppl = 2 ** out.loss;
    return out;
  }
}

export const natLossCriterionComponent: CriterionComponent<NatLossOptions, Criterion<NatLossModel>> = {
  name: 'nat_loss',
  description: "fairseq's nat_loss: label-smoothed CE over the model's selected positions plus weighted extra terms (CMLM)",
  options: natLossOptionTable,
  defaults: natLossDefaults,
  build: (opts) => new NatLossCriterion(opts),
};
