/**
 * Registers fairseq's `transformer` model: its flags (declared once, fairseq names), the named
 * architectures of models/transformer.ts, and the autoregressive generator hooks beam search
 * needs. The network itself lives in models/transformer.ts.
 */
import * as tf from '@tensorflow/tfjs';
import { boolFlag, choiceFlag, floatFlag, intFlag, type OptionTable } from '../src/options.js';
import type { ModelComponent } from '../src/registry.js';
import type { AutoregressiveModel } from '../src/generate/generator.js';
import type { ModelDeps } from '../src/train/types.js';
import {
  TransformerModel,
  disposeDecoderState,
  transformerArchitectures,
  transformerDefaults,
  type DecoderState,
  type EncoderOut,
  type TransformerOptions,
} from './transformer.js';
import { disposeEncoderOut, reorderEncoderOut } from '../src/nn/encoder.js';

export const transformerOptionTable: OptionTable<TransformerOptions> = {
  encoderEmbedDim: intFlag('--encoder-embed-dim', 'encoder embedding dimension', 'N', 1),
  encoderFfnEmbedDim: intFlag('--encoder-ffn-embed-dim', 'encoder FFN hidden dimension', 'N', 1),
  encoderLayers: intFlag('--encoder-layers', 'encoder layers', 'N', 1),
  encoderAttentionHeads: intFlag('--encoder-attention-heads', 'encoder attention heads', 'N', 1),
  encoderNormalizeBefore: boolFlag('--encoder-normalize-before', 'pre-LN encoder layers'),
  encoderLearnedPos: boolFlag('--encoder-learned-pos', 'learned encoder positions (default sinusoidal)'),
  decoderEmbedDim: intFlag('--decoder-embed-dim', 'decoder embedding dimension', 'N', 1),
  decoderFfnEmbedDim: intFlag('--decoder-ffn-embed-dim', 'decoder FFN hidden dimension', 'N', 1),
  decoderLayers: intFlag('--decoder-layers', 'decoder layers', 'N', 1),
  decoderAttentionHeads: intFlag('--decoder-attention-heads', 'decoder attention heads', 'N', 1),
  decoderNormalizeBefore: boolFlag('--decoder-normalize-before', 'pre-LN decoder layers'),
  decoderLearnedPos: boolFlag('--decoder-learned-pos', 'learned decoder positions (default sinusoidal)'),
  dropout: floatFlag('--dropout', 'dropout probability'),
  attentionDropout: floatFlag('--attention-dropout', 'dropout on attention weights'),
  activationDropout: floatFlag('--activation-dropout', 'dropout after the FFN activation'),
  activationFn: choiceFlag('--activation-fn', 'FFN activation', ['relu', 'gelu'] as const),
  shareAllEmbeddings: boolFlag('--share-all-embeddings', 'one embedding table for encoder, decoder and output (joined dictionary)'),
  shareDecoderInputOutputEmbed: boolFlag('--share-decoder-input-output-embed', 'tie the decoder input and output embeddings'),
  noScaleEmbedding: boolFlag('--no-scale-embedding', "don't scale embeddings by sqrt(dim)"),
  noTokenPositionalEmbeddings: boolFlag('--no-token-positional-embeddings', 'no position embeddings'),
  maxSourcePositions: intFlag('--max-source-positions', 'max source length', 'N', 1),
  maxTargetPositions: intFlag('--max-target-positions', 'max target length', 'N', 1),
};

/** The Transformer with the hooks the beam search generator uses. */
export class AutoregressiveTransformer extends TransformerModel implements AutoregressiveModel<EncoderOut, DecoderState> {
  readonly generatorFamily = 'autoregressive' as const;

  get maxTargetPositions(): number {
    return this.opts.maxTargetPositions;
  }

  reorderEncoderOut(e: EncoderOut, indices: tf.Tensor1D): EncoderOut {
    return reorderEncoderOut(e, indices);
  }

  disposeEncoderOut(e: EncoderOut): void {
    disposeEncoderOut(e);
  }

  disposeDecoderState(s: DecoderState): void {
    disposeDecoderState(s);
  }

  /**
   * Reranking score of candidate rows (fairseq's IterativeRefinementGenerator.rerank): teacher
   * forcing on prevTokens [N, L] (EOS at position 0), mean log-prob of tokens 1.. over non-pad.
   */
  scoreCandidates(srcTokens: tf.Tensor2D, prevTokens: tf.Tensor2D): Float32Array {
    return tf.tidy(() => {
      const [n, l] = prevTokens.shape;
      const logits = this.forward(srcTokens, prevTokens, false); // [N, L, V]
      // output j-1 scores token j
      const { picked, mask } = this.picked(logits.slice([0, 0, 0], [n, l - 1, -1]) as tf.Tensor3D, prevTokens.slice([0, 1], [n, l - 1]));
      return tf.div(tf.sum(tf.mul(picked, mask), 1), tf.maximum(tf.sum(mask, 1), 1)).dataSync() as Float32Array;
    });
  }

  /**
   * Teacher-forced log-prob of every target token (fairseq's SequenceScorer, --score-reference):
   * [N, L] row-major, 0 at pad positions.
   */
  targetLogProbs(srcTokens: tf.Tensor2D, prevOutputTokens: tf.Tensor2D, target: tf.Tensor2D): Float32Array {
    return tf.tidy(() => {
      const { picked, mask } = this.picked(this.forward(srcTokens, prevOutputTokens, false), target);
      return tf.mul(picked, mask).dataSync() as Float32Array;
    });
  }

  /** log_softmax(logits) at `tokens` [N, L], and the non-pad mask of `tokens`. */
  private picked(logits: tf.Tensor3D, tokens: tf.Tensor2D): { picked: tf.Tensor2D; mask: tf.Tensor2D } {
    const lp = tf.logSoftmax(logits);
    return {
      picked: tf.sum(tf.mul(lp, tf.oneHot(tokens, lp.shape[2])), 2) as tf.Tensor2D,
      mask: tf.cast(tf.notEqual(tokens, this.dicts.tgt.padIndex), 'float32') as tf.Tensor2D,
    };
  }
}

export const transformerComponent: ModelComponent<TransformerOptions, AutoregressiveTransformer, ModelDeps> = {
  name: 'transformer',
  description: 'autoregressive encoder-decoder Transformer (Vaswani et al., fairseq)',
  options: transformerOptionTable,
  defaults: transformerDefaults,
  build: (opts, deps) => new AutoregressiveTransformer(opts, { src: deps.srcDict, tgt: deps.tgtDict }, deps.seed),
};

export { transformerArchitectures };
