/**
 * Token embeddings (fairseq `Embedding`): a [V, C] table, init N(0, C^-0.5) with the padding
 * row zeroed, or BERT-style N(0, 0.02) (`--apply-bert-init`). Lookup is a gather scaled by
 * `scale` (sqrt(C) in the Transformer unless `--no-scale-embedding`).
 *
 * Left out: PyTorch's padding_idx also blocks the lookup's gradient into the pad row. Here the
 * pad row starts at zero and only pad positions read it; those positions feed no loss (masked
 * as keys, ignored as targets), so its gradient is zero in practice, as in fairseq.
 */
import * as tf from '@tensorflow/tfjs';
import { normal, type InitStyle, type ParamStore } from './params.js';

export function initEmbedding(
  store: ParamStore,
  name: string,
  numEmbeddings: number,
  dim: number,
  padIndex: number,
  init: InitStyle = 'fairseq',
): tf.Variable {
  const std = init === 'bert' ? 0.02 : dim ** -0.5;
  return store.create(name, [numEmbeddings, dim], normal(std), { padRow: padIndex });
}

/** scale * weight[tokens]: [B, T] int32 -> [B, T, C]. */
export function embed(weight: tf.Tensor2D, tokens: tf.Tensor2D, scale = 1): tf.Tensor3D {
  return tf.tidy(() => {
    const [b, t] = tokens.shape;
    const c = weight.shape[1];
    let x: tf.Tensor2D = tf.gather(weight, tf.reshape(tokens, [b * t])); // [B*T, C]
    if (scale !== 1) x = tf.mul(x, scale);
    return tf.reshape(x, [b, t, c]); // [B, T, C]
  });
}
