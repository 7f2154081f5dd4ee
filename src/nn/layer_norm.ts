/**
 * Layer normalisation over the last axis, as torch.nn.LayerNorm (biased variance, eps inside
 * the square root, default eps 1e-5). Parameters `<prefix>.weight` (ones) and `<prefix>.bias`
 * (zeros); with `affine: false` there are none (Difformer's `--embed-norm` without
 * `--embed-norm-affine`).
 */
import * as tf from '@tensorflow/tfjs';
import { ones, zeros, type ParamStore } from './params.js';

export function initLayerNorm(store: ParamStore, prefix: string, dim: number, opts: { affine?: boolean } = {}): void {
  if (opts.affine === false) return;
  store.create(`${prefix}.weight`, [dim], ones);
  store.create(`${prefix}.bias`, [dim], zeros);
}

/** y = (x - mean) / sqrt(var + eps) * weight + bias, over the last axis. */
export function layerNormWith<T extends tf.Tensor>(x: T, weight?: tf.Tensor1D, bias?: tf.Tensor1D, eps = 1e-5): T {
  return tf.tidy(() => {
    const axis = x.rank - 1;
    const mean = tf.mean(x, axis, true);
    const centered = tf.sub(x, mean);
    const variance = tf.mean(tf.square(centered), axis, true);
    // A later perf pass could fuse this into one wasm kernel (the backend notes list it).
    let y = tf.mul(centered, tf.rsqrt(tf.add(variance, eps)));
    if (weight !== undefined) y = tf.mul(y, weight);
    if (bias !== undefined) y = tf.add(y, bias);
    return y as T;
  });
}

/** Layer norm with the parameters stored under `prefix` (none when created with affine: false). */
export function layerNorm<T extends tf.Tensor>(store: ParamStore, prefix: string, x: T, eps = 1e-5): T {
  const w = `${prefix}.weight`;
  if (!store.has(w)) return layerNormWith(x, undefined, undefined, eps);
  return layerNormWith(x, store.get(w) as tf.Tensor1D, store.get(`${prefix}.bias`) as tf.Tensor1D, eps);
}
