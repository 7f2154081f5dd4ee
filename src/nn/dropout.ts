/**
 * Dropout with masks drawn from the model's seeded RNG (not tfjs's global random state), so a
 * run is reproducible from `--seed` and resumable from the RNG state stored in a checkpoint.
 * Inactive (returns its input unchanged) when not training or when p = 0.
 */
import * as tf from '@tensorflow/tfjs';
import type { Rng } from './params.js';

/** What every forward function needs besides parameters. */
export interface ForwardContext {
  training: boolean;
  rng: Rng;
}

/** Inverted dropout: kept units are scaled by 1/(1-p), as torch.nn.functional.dropout. */
export function dropout<T extends tf.Tensor>(x: T, p: number, ctx: ForwardContext): T {
  if (!ctx.training || p <= 0) return x;
  if (p >= 1) return tf.zerosLike(x);
  const n = x.size;
  const mask = new Float32Array(n);
  const scale = 1 / (1 - p);
  // Compare 24-bit integers: keep iff u >= p, u uniform in [0, 1).
  const threshold = Math.ceil(p * 16777216);
  const rng = ctx.rng;
  for (let i = 0; i < n; i++) if (rng.nextUint32() >>> 8 >= threshold) mask[i] = scale;
  // A later perf pass could draw the mask in a wasm kernel and fuse the multiply.
  return tf.mul(x, tf.tensor(mask, x.shape, 'float32')) as T;
}
