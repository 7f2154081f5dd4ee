/**
 * Position embeddings as fairseq v0.10.2 (`modules/sinusoidal_positional_embedding.py`,
 * `modules/learned_positional_embedding.py`, `utils.make_positions`).
 *
 * Positions count non-pad tokens from pad_idx + 1; pad tokens get position pad_idx, whose row
 * is zero. So a left-padded sentence starts at pad_idx + 1 at its first real token.
 *
 * Sinusoidal (a constant buffer `<prefix>.weights`, not saved): row p is
 *   [sin(p * f_0) .. sin(p * f_{h-1}) | cos(p * f_0) .. cos(p * f_{h-1})],
 *   f_i = exp(-i * ln(10000) / (h - 1)), h = floor(C / 2), one zero column if C is odd,
 *   computed in float32 like fairseq; the table has maxPositions + pad_idx + 1 rows.
 * Learned (`<prefix>.weight`): a [maxPositions + pad_idx + 1, C] table, N(0, C^-0.5) (or
 *   N(0, 0.02) under BERT init) with the pad row zero.
 */
import * as tf from '@tensorflow/tfjs';
import { DifformerError } from '../errors.js';
import { normal, type InitStyle, type ParamStore } from './params.js';

/** fairseq's sinusoidal table as plain numbers: [numEmbeddings * dim], row-major. */
export function sinusoidalTable(numEmbeddings: number, dim: number, padIndex: number): Float32Array {
  const half = Math.floor(dim / 2);
  const out = new Float32Array(numEmbeddings * dim);
  // float32 at each step, as torch computes it (fround mimics float32 rounding).
  const step = Math.fround(Math.log(10000) / (half - 1));
  const freqs = new Float32Array(half);
  for (let i = 0; i < half; i++) freqs[i] = Math.fround(Math.exp(Math.fround(i * -step)));
  for (let p = 0; p < numEmbeddings; p++) {
    if (p === padIndex) continue;
    const row = p * dim;
    for (let i = 0; i < half; i++) {
      const a = Math.fround(p * freqs[i]!);
      out[row + i] = Math.sin(a);
      out[row + half + i] = Math.cos(a);
    }
  }
  return out;
}

export interface PositionsOptions {
  maxPositions: number;
  dim: number;
  padIndex: number;
  learned: boolean;
  init?: InitStyle;
}

/** Create `<prefix>.weight` (learned) or the sinusoidal buffer `<prefix>.weights`. */
export function initPositions(store: ParamStore, prefix: string, opts: PositionsOptions): void {
  const rows = opts.maxPositions + opts.padIndex + 1;
  if (opts.learned) {
    const std = opts.init === 'bert' ? 0.02 : opts.dim ** -0.5;
    store.create(`${prefix}.weight`, [rows, opts.dim], normal(std), { padRow: opts.padIndex });
  } else {
    store.registerBuffer(`${prefix}.weights`, tf.tensor2d(sinusoidalTable(rows, opts.dim, opts.padIndex), [rows, opts.dim]));
  }
}

function table(store: ParamStore, prefix: string): tf.Tensor2D {
  const learned = `${prefix}.weight`;
  return (store.has(learned) ? store.get(learned) : store.getBuffer(`${prefix}.weights`)) as tf.Tensor2D;
}

/** fairseq make_positions: cumsum of the non-pad mask times the mask, plus pad. [B, T] int32. */
export function makePositions(tokens: tf.Tensor2D, padIndex: number): tf.Tensor2D {
  return tf.tidy(() => {
    const mask = tf.cast(tf.notEqual(tokens, padIndex), 'float32');
    const pos = tf.add(tf.mul(tf.cumsum(mask, 1), mask), padIndex);
    return tf.cast(pos, 'int32') as tf.Tensor2D;
  });
}

/** Position embeddings for every token: [B, T] -> [B, T, C]. */
export function embedPositions(store: ParamStore, prefix: string, tokens: tf.Tensor2D, padIndex: number): tf.Tensor3D {
  const weights = table(store, prefix);
  const maxPositions = weights.shape[0] - padIndex - 1;
  const [b, t] = tokens.shape;
  if (t > maxPositions) {
    throw new DifformerError(
      'DIFFORMER_BAD_DATA',
      `sequence of ${t} tokens exceeds the ${maxPositions} positions of ${prefix}; filter longer sentences or raise --max-source-positions/--max-target-positions`,
    );
  }
  return tf.tidy(() => {
    const positions = tf.reshape(makePositions(tokens, padIndex), [b * t]);
    return tf.reshape(tf.gather(weights, positions), [b, t, weights.shape[1]]); // [B, T, C]
  });
}

/**
 * Position embedding of decoding step `step` (0-based) for a batch with no padding in its
 * prefix, as in beam search: position pad_idx + 1 + step for every row. -> [B, 1, C].
 */
export function embedPositionAt(store: ParamStore, prefix: string, batch: number, step: number, padIndex: number): tf.Tensor3D {
  const weights = table(store, prefix);
  const pos = padIndex + 1 + step;
  if (pos >= weights.shape[0]) {
    throw new DifformerError(
      'DIFFORMER_BAD_DATA',
      `decoding step ${step} exceeds the ${weights.shape[0] - padIndex - 1} positions of ${prefix}; lower --max-len-b or raise --max-target-positions`,
    );
  }
  return tf.tidy(() => {
    const row = tf.slice(weights, [pos, 0], [1, weights.shape[1]]); // [1, C]
    return tf.tile(tf.reshape(row, [1, 1, weights.shape[1]]), [batch, 1, 1]); // [B, 1, C]
  });
}

/**
 * improved-diffusion's timestep_embedding (the diffusion decoder's time input, not fairseq's
 * position table): [cos(t f_i) | sin(t f_i)], f_i = exp(-ln(10000) i / half), i < half =
 * floor(dim / 2), a zero column when dim is odd. One row per entry of `t`.
 */
export function timestepEmbedding(t: ArrayLike<number>, dim: number): Float32Array {
  const half = Math.floor(dim / 2);
  const out = new Float32Array(t.length * dim);
  for (let r = 0; r < t.length; r++) {
    for (let i = 0; i < half; i++) {
      const a = t[r]! * Math.exp((-Math.log(10000) * i) / half);
      out[r * dim + i] = Math.cos(a);
      out[r * dim + half + i] = Math.sin(a);
    }
  }
  return out;
}
