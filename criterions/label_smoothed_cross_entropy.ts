/**
 * fairseq v0.10.2's `label_smoothed_cross_entropy` criterion
 * (fairseq/criterions/label_smoothed_cross_entropy.py) as pure functions.
 *
 * Per target token t with log-probabilities lp over a vocabulary of V types, v0.10.2 computes
 *
 *   nll_loss    = -lp[t]
 *   smooth_loss = -sum_v lp[v]
 *   eps_i       = epsilon / V
 *   loss        = (1 - epsilon) * nll_loss + eps_i * smooth_loss
 *
 * and sums both over the tokens whose target is not the padding index. (fairseq after v0.10.2
 * changed this to eps_i = epsilon / (V - 1) and (1 - epsilon - eps_i) * nll_loss; Difformer pins
 * v0.10.2, so we follow the older formula.) The gradient denominator `sampleSize` is the number
 * of non-pad target tokens, or of sentences with `sentenceAvg`; logs report
 * loss / sample_size and nll_loss / ntokens in base 2 (divided by ln 2), ppl = 2^nll_loss.
 *
 * From logits the loss is computed without materialising log-probabilities: with
 * lse = logsumexp(logits), nll = lse - logits[t] and smooth = V * lse - sum_v logits[v], and
 * its gradient is written by hand: softmax(logits) - (1 - epsilon) * onehot(t) - epsilon / V
 * (one fused pass instead of tfjs's chain of log-softmax gradients).
 *
 * Left out: --report-accuracy, --ignore-prefix-size.
 */
import * as tf from '@tensorflow/tfjs';
import { nativeSmoothedXentTerms } from '../src/backend/native_kernels.js';
import { DifformerError } from '../src/errors.js';
import { boolFlag, floatFlag, type OptionTable } from '../src/options.js';
import type { CriterionComponent } from '../src/registry.js';
import { tidyObject } from '../src/nn/params.js';
import type { Criterion, CriterionOutput, LogSums, TrainableModel } from '../src/train/types.js';

export interface LabelSmoothedCrossEntropyOptions {
  /** fairseq --label-smoothing: epsilon, 0 means plain cross-entropy. */
  labelSmoothing: number;
  /** fairseq --sentence-avg: normalise the gradient by sentences instead of tokens. */
  sentenceAvg: boolean;
}

export const labelSmoothedCrossEntropyDefaults: Readonly<LabelSmoothedCrossEntropyOptions> = Object.freeze({
  labelSmoothing: 0,
  sentenceAvg: false,
});

export interface NllLossOptions {
  /** Sum over tokens (default) or return per-token values [N]. */
  reduce?: boolean;
  /** The input already holds log-probabilities (default: logits). */
  inputIsLogProbs?: boolean;
}

/** Rows [loss; nll] per token ([2, N]) from logits, with the hand-written gradient above. */
function smoothedTermsFromLogits(logits: tf.Tensor2D, target: tf.Tensor1D, epsilon: number): tf.Tensor2D {
  const [n, v] = logits.shape;
  const terms = tf.customGrad((lgIn: tf.Tensor | tf.GradSaveFunc, tgIn: tf.Tensor | tf.GradSaveFunc, saveIn: tf.Tensor | tf.GradSaveFunc) => {
    const lg = lgIn as tf.Tensor2D;
    const tg = tgIn as tf.Tensor1D;
    const lse = tf.logSumExp(lg, 1); // [N]
    const flatIndex = tf.add(tf.range(0, n * v, v, 'int32'), tg); // [N] offsets into [N*V]
    const targetLogit = tf.gather(tf.reshape(lg, [n * v]), flatIndex); // [N]
    const nll = tf.sub(lse, targetLogit);
    const smooth = tf.sub(tf.mul(lse, v), tf.sum(lg, 1));
    const loss = tf.add(tf.mul(nll, 1 - epsilon), tf.mul(smooth, epsilon / v));
    (saveIn as tf.GradSaveFunc)([lg, tg, lse]);
    return {
      value: tf.stack([loss, nll]) as tf.Tensor2D, // [2, N]
      gradFunc: (dy: tf.Tensor2D, saved: tf.Tensor[]) => {
        const [sl, st, slse] = saved as [tf.Tensor2D, tf.Tensor1D, tf.Tensor1D];
        const [dyLoss, dyNll] = tf.unstack(dy) as [tf.Tensor1D, tf.Tensor1D];
        const col = (x: tf.Tensor1D): tf.Tensor2D => tf.reshape(x, [n, 1]);
        const probs = tf.exp(tf.sub(sl, col(slse))); // [N, V]
        const onehot = tf.cast(tf.oneHot(st, v), 'float32'); // [N, V]
        const dLogits = tf.sub(
          tf.sub(tf.mul(probs, col(tf.add(dyLoss, dyNll))), tf.mul(onehot, col(tf.add(tf.mul(dyLoss, 1 - epsilon), dyNll)))),
          col(tf.mul(dyLoss, epsilon / v)),
        );
        return [dLogits, tf.zeros(st.shape)];
      },
    };
  }) as (lg: tf.Tensor2D, tg: tf.Tensor1D) => tf.Tensor2D;
  return terms(logits, target);
}

/** Rows [loss; nll] per token ([2, N]) from log-probabilities (plain autodiff). */
function smoothedTermsFromLogProbs(lprobs: tf.Tensor2D, target: tf.Tensor1D, epsilon: number): tf.Tensor2D {
  const [n, v] = lprobs.shape;
  const flatIndex = tf.add(tf.range(0, n * v, v, 'int32'), target);
  const nll = tf.neg(tf.gather(tf.reshape(lprobs, [n * v]), flatIndex)); // [N]
  const smooth = tf.neg(tf.sum(lprobs, 1)); // [N]
  const loss = tf.add(tf.mul(nll, 1 - epsilon), tf.mul(smooth, epsilon / v));
  return tf.stack([loss, nll]) as tf.Tensor2D;
}

/**
 * fairseq's label_smoothed_nll_loss: input [N, V] logits (or log-probs), target [N] int32.
 * Tokens whose target equals `ignoreIndex` contribute 0. Returns sums (scalars) by default,
 * per-token values [N] with `reduce: false`.
 */
export function labelSmoothedNllLoss(
  input: tf.Tensor2D,
  target: tf.Tensor1D,
  epsilon: number,
  ignoreIndex?: number,
  opts: NllLossOptions = {},
): { loss: tf.Tensor; nllLoss: tf.Tensor } {
  if (input.shape[0] !== target.shape[0]) {
    throw new Error(`labelSmoothedNllLoss: input has ${input.shape[0]} rows but target has ${target.shape[0]} entries`);
  }
  const out = tf.tidy(() => {
    const tgt = target.dtype === 'int32' ? target : (tf.cast(target, 'int32') as tf.Tensor1D);
    let terms = opts.inputIsLogProbs
      ? smoothedTermsFromLogProbs(input, tgt, epsilon)
      : (nativeSmoothedXentTerms(input, tgt, epsilon) ?? smoothedTermsFromLogits(input, tgt, epsilon));
    if (ignoreIndex !== undefined) terms = tf.mul(terms, tf.cast(tf.notEqual(tgt, ignoreIndex), 'float32')); // [2, N]
    const reduced = opts.reduce === false ? terms : tf.sum(terms, 1); // [2, N] or [2]
    const [loss, nllLoss] = tf.unstack(reduced);
    return { loss: loss!, nllLoss: nllLoss! };
  });
  return out;
}

/** What one batch contributes to the logs (sums in nats, as fairseq's logging_output). */
export interface LoggingOutput {
  loss: number;
  nll_loss: number;
  ntokens: number;
  nsentences: number;
  sample_size: number;
}

/** The summed loss terms of a batch and what fairseq logs beside them. */
export interface LabelSmoothedResult {
  /** Summed loss; the trainer divides gradients by sampleSize (fairseq's multiply_grads). */
  loss: tf.Scalar;
  nllLoss: tf.Scalar;
  sampleSize: number;
  ntokens: number;
  nsentences: number;
}

/**
 * The criterion's forward over a batch: logits [B, T, V], target [B, T] int32 (padded with
 * `padIndex`). `ntokens` (non-pad target tokens) is read from the target when not given.
 */
export function labelSmoothedCrossEntropy(
  logits: tf.Tensor3D,
  target: tf.Tensor2D,
  opts: LabelSmoothedCrossEntropyOptions,
  padIndex: number,
  ntokens?: number,
): LabelSmoothedResult {
  const [b, t, v] = logits.shape;
  const { loss, nllLoss } = tf.tidy(() =>
    labelSmoothedNllLoss(tf.reshape(logits, [b * t, v]), tf.reshape(target, [b * t]), opts.labelSmoothing, padIndex), // [B*T, V]
  );
  const nt = ntokens ?? countNonPad(target, padIndex);
  return { loss: loss as tf.Scalar, nllLoss: nllLoss as tf.Scalar, sampleSize: opts.sentenceAvg ? b : nt, ntokens: nt, nsentences: b };
}

function countNonPad(target: tf.Tensor2D, padIndex: number): number {
  const data = target.dataSync();
  let n = 0;
  for (let i = 0; i < data.length; i++) if (data[i] !== padIndex) n++;
  return n;
}

export interface ReducedMetrics {
  /** loss / sample_size / ln 2. */
  loss: number;
  /** nll_loss / ntokens / ln 2. */
  nll_loss: number;
  /** 2^nll_loss. */
  ppl: number;
  ntokens: number;
  nsentences: number;
  sample_size: number;
}

/** fairseq's reduce_metrics: sum the logs of several batches (or workers), report in base 2. */
export function reduceMetrics(logs: readonly LoggingOutput[]): ReducedMetrics {
  const sum = (k: keyof LoggingOutput): number => logs.reduce((a, l) => a + l[k], 0);
  const sampleSize = sum('sample_size');
  const ntokens = sum('ntokens');
  const loss = sum('loss') / sampleSize / Math.LN2;
  const nll = sum('nll_loss') / ntokens / Math.LN2;
  return { loss, nll_loss: nll, ppl: 2 ** nll, ntokens, nsentences: sum('nsentences'), sample_size: sampleSize };
}

// ---- the registered criterion --------------------------------------------------------------

/** Models this criterion trains: teacher-forced encoder-decoders returning logits. */
export interface TeacherForcedModel extends TrainableModel {
  forward(srcTokens: tf.Tensor2D, prevOutputTokens: tf.Tensor2D, training: boolean): tf.Tensor3D;
  readonly dicts: { tgt: { padIndex: number } };
}

export const labelSmoothedCrossEntropyOptionTable: OptionTable<LabelSmoothedCrossEntropyOptions> = {
  labelSmoothing: floatFlag('--label-smoothing', 'epsilon for label smoothing (0 = none)'),
  sentenceAvg: boolFlag('--sentence-avg', 'normalize gradients by the number of sentences, not tokens'),
};

export function buildLabelSmoothedCrossEntropy(opts: LabelSmoothedCrossEntropyOptions): Criterion<TeacherForcedModel> {
  return {
    name: 'label_smoothed_cross_entropy',
    check(model: TrainableModel): asserts model is TeacherForcedModel {
      if (typeof (model as Partial<TeacherForcedModel>).forward !== 'function' || (model as { generatorFamily?: string }).generatorFamily !== 'autoregressive') {
        throw new DifformerError('DIFFORMER_BAD_OPTION', '--criterion label_smoothed_cross_entropy trains autoregressive models (--arch transformer*); pick the criterion of your model');
      }
    },
    forward(model, batch, training): CriterionOutput {
      return tidyObject(() => {
        const src = tf.tensor2d(batch.srcTokens, [batch.bsz, batch.srcLen], 'int32');
        const prev = tf.tensor2d(batch.prevOutputTokens, [batch.bsz, batch.tgtLen], 'int32');
        const tgt = tf.tensor2d(batch.target, [batch.bsz, batch.tgtLen], 'int32');
        const logits = model.forward(src, prev, training);
        const out = labelSmoothedCrossEntropy(logits, tgt, opts, model.dicts.tgt.padIndex, batch.ntokens);
        return { loss: out.loss, sampleSize: out.sampleSize, logging: { loss: out.loss, nll_loss: out.nllLoss } };
      });
    },
    reduce(logs: LogSums) {
      const r = reduceMetrics([{ loss: logs.values.loss ?? 0, nll_loss: logs.values.nll_loss ?? 0, ntokens: logs.ntokens, nsentences: logs.nsentences, sample_size: logs.sampleSize }]);
      return { loss: r.loss, nll_loss: r.nll_loss, ppl: r.ppl };
    },
  };
}

export const labelSmoothedCrossEntropyComponent: CriterionComponent<LabelSmoothedCrossEntropyOptions, Criterion<TeacherForcedModel>> = {
  name: 'label_smoothed_cross_entropy',
  description: "fairseq's label-smoothed cross-entropy for autoregressive models",
  options: labelSmoothedCrossEntropyOptionTable,
  defaults: labelSmoothedCrossEntropyDefaults,
  build: buildLabelSmoothedCrossEntropy,
};
