/**
 * Dropout with masks drawn from the model's seeded RNG (not tfjs's global random state), so a
 * run is reproducible from `--seed` and resumable from the RNG state stored in a checkpoint.
 * Inactive (returns its input unchanged) when not training or when p = 0.
 */
import * as tf from '@tensorflow/tfjs';
import { addDropoutMasked, applyDropoutMask, dropoutMask } from '../backend/native_kernels.js';
import type { Rng } from './params.js';

/** What every forward function needs besides parameters. */
export interface ForwardContext {
  training: boolean;
  rng: Rng;
}

/**
 * Inverted dropout: kept units are scaled by 1/(1-p), as torch.nn.functional.dropout. Only the
 * mask is kept for backprop (a plain multiply would also keep x alive).
 */
export function dropout<T extends tf.Tensor>(x: T, p: number, ctx: ForwardContext): T {
  if (!ctx.training || p <= 0) return x;
  if (p >= 1) return tf.zerosLike(x);
  return applyDropoutMask(x, dropoutMask(ctx.rng, x.shape, p));
}

/** residual + dropout(x): the residual connection of a Transformer sublayer, fused. */
export function addDropout<T extends tf.Tensor>(residual: T, x: T, p: number, ctx: ForwardContext): T {
  if (!ctx.training || p <= 0) return tf.add(residual, x);
  if (p >= 1) return tf.add(residual, tf.zerosLike(x));
  return addDropoutMasked(residual, x, dropoutMask(ctx.rng, x.shape, p));
}
