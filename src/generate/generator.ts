/**
 * Generators turn a batch into hypotheses; one per model family (fairseq's task.build_generator):
 * autoregressive beam search here, the diffusion sampler and mask-predict in their own files.
 * A model names its generator family; `buildGenerator` (index.ts) picks the builder by it.
 */
import * as tf from '@tensorflow/tfjs';
import type { Batch } from '../data/language_pair_dataset.js';
import type { Dictionary } from '../data/dictionary.js';
import { DifformerError } from '../errors.js';
import { floatFlag, intFlag, type OptionTable } from '../options.js';
import { beamSearch, type Hypothesis, type IncrementalModel } from './sequence_generator.js';

export type { Hypothesis };

export interface SequenceGenerator {
  /** The beam width printed in the final line ("Generate test with beam=N"). */
  readonly beamLabel: number;
  /** Hypotheses per sentence of the batch (batch order), best first. */
  generate(batch: Batch): Hypothesis[][];
  /** Iterative decoders (--retain-iter-history): the hypotheses and each step's chosen tokens. */
  generateWithHistory?(batch: Batch): GenerationWithHistory;
}

export interface GenerationWithHistory {
  /** Per sentence (batch order), all candidates best first. */
  hypos: Hypothesis[][];
  /** With retainIterHistory: per sentence, the chosen candidate's tokens at each step, in decoding order. */
  history: Int32Array[][] | undefined;
}

/** fairseq's generation flags shared by every generator. */
export interface GenerationOptions {
  beam: number;
  nbest: number;
  lenpen: number;
  maxLenA: number;
  maxLenB: number;
  minLen: number;
  unkpen: number;
  /** fairseq's --no-repeat-ngram-size: beam search never repeats an n-gram within a hypothesis (0 = off). */
  noRepeatNgramSize: number;
}

export const generationDefaults: Readonly<GenerationOptions> = Object.freeze({
  beam: 5,
  nbest: 1,
  lenpen: 1,
  maxLenA: 0,
  maxLenB: 200,
  minLen: 1,
  unkpen: 0,
  noRepeatNgramSize: 0,
});

export const generationOptionTable: OptionTable<GenerationOptions> = {
  beam: intFlag('--beam', 'beam size', 'N', 1),
  nbest: intFlag('--nbest', 'number of hypotheses to output', 'N', 1),
  lenpen: floatFlag('--lenpen', 'length penalty: scores are divided by length^lenpen'),
  maxLenA: floatFlag('--max-len-a', 'generate sequences of at most a*srclen + b tokens'),
  maxLenB: intFlag('--max-len-b', 'generate sequences of at most a*srclen + b tokens', 'N', 0),
  minLen: intFlag('--min-len', 'minimum generation length', 'N', 0),
  unkpen: floatFlag('--unkpen', 'unknown word penalty (positive: fewer <unk>)'),
  noRepeatNgramSize: intFlag('--no-repeat-ngram-size', 'autoregressive beam search: no n-gram of this size twice in a hypothesis (0 = off)', 'N', 0),
};


/** What an autoregressive model offers beam search (the AR Transformer implements it). */
export interface AutoregressiveModel<E, S> extends IncrementalModel<E, S> {
  readonly generatorFamily: 'autoregressive';
  reorderEncoderOut(e: E, indices: tf.Tensor1D): E;
  disposeEncoderOut(e: E): void;
  disposeDecoderState(s: S): void;
  readonly maxTargetPositions: number;
}

export function buildBeamSearchGenerator<E, S>(model: AutoregressiveModel<E, S>, tgtDict: Dictionary, opts: GenerationOptions): SequenceGenerator {
  if (opts.nbest > opts.beam) throw new DifformerError('DIFFORMER_BAD_OPTION', `--nbest ${opts.nbest} cannot exceed --beam ${opts.beam}`);
  const ids = { pad: tgtDict.padIndex, eos: tgtDict.eosIndex, unk: tgtDict.unkIndex, bos: tgtDict.bosIndex };
  return {
    beamLabel: opts.beam,
    generate(batch: Batch): Hypothesis[][] {
      const src = tf.tensor2d(batch.srcTokens, [batch.bsz, batch.srcLen], 'int32');
      try {
        return beamSearch(
          model,
          (e, idx) => model.reorderEncoderOut(e, idx),
          (e) => model.disposeEncoderOut(e),
          (s) => model.disposeDecoderState(s),
          src,
          batch.srcLengths,
          ids,
          tgtDict.size,
          { ...opts, maxPositions: model.maxTargetPositions },
        );
      } finally {
        src.dispose();
      }
    },
  };
}
