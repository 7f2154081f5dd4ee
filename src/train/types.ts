/**
 * The contracts between the training loop, models and criterions. Models are named
 * parameters plus forward functions; a criterion turns (model, batch) into a loss; the trainer
 * knows neither architecture nor loss.
 */
import type * as tf from '@tensorflow/tfjs';
import type { Batch } from '../data/language_pair_dataset.js';
import type { Dictionary } from '../data/dictionary.js';
import type { ParamStore } from '../nn/params.js';

/** What the trainer needs of any model. */
export interface TrainableModel {
  readonly params: ParamStore;
  /** Free every tensor the model owns. */
  dispose(): void;
}

/**
 * One batch's loss. `loss` is what gradients are taken of; gradients are divided by the summed
 * `sampleSize` of the update's batches (fairseq: ntokens for summed losses, 1 for means).
 * `logging` holds summed values in nats (scalars, read after the step in one sync).
 */
export interface CriterionOutput {
  loss: tf.Scalar;
  sampleSize: number;
  logging: Record<string, tf.Scalar>;
}

/** Summed logging values of one or more batches, plus counts. */
export interface LogSums {
  values: Record<string, number>;
  sampleSize: number;
  ntokens: number;
  nsentences: number;
}

export interface Criterion<M extends TrainableModel = TrainableModel> {
  readonly name: string;
  /** Throws a DifformerError naming both when the model is not one this criterion can train. */
  check(model: TrainableModel): asserts model is M;
  forward(model: M, batch: Batch, training: boolean): CriterionOutput;
  /** fairseq's reduce_metrics: averages in base 2 ('loss', 'nll_loss', ...). */
  reduce(logs: LogSums): Record<string, number>;
}

/** What a model component's build() receives. */
export interface ModelDeps {
  srcDict: Dictionary;
  tgtDict: Dictionary;
  seed: number;
}
