/**
 * Layer normalisation over the last axis, as torch.nn.LayerNorm (biased variance, eps inside
 * the square root, default eps 1e-5). Parameters `<prefix>.weight` (ones) and `<prefix>.bias`
 * (zeros); with `affine: false` there are none (Difformer's `--embed-norm` without
 * `--embed-norm-affine`).
 */
import * as tf from '@tensorflow/tfjs';
import { layerNormOp } from '../backend/native_kernels.js';
import { ones, zeros, type ParamStore } from './params.js';

export function initLayerNorm(store: ParamStore, prefix: string, dim: number, opts: { affine?: boolean } = {}): void {
  if (opts.affine === false) return;
  store.create(`${prefix}.weight`, [dim], ones);
  store.create(`${prefix}.bias`, [dim], zeros);
}

/**
 * y = (x - mean) / sqrt(var + eps) * weight + bias, over the last axis: one op with its own
 * gradient that keeps only the normalised input and 1/std for backprop (native kernel when the
 * addon is active; see src/backend/native_kernels.ts).
 */
export function layerNormWith<T extends tf.Tensor>(x: T, weight?: tf.Tensor1D, bias?: tf.Tensor1D, eps = 1e-5): T {
  return layerNormOp(x, weight, bias, eps);
}

/** Layer norm with the parameters stored under `prefix` (none when created with affine: false). */
export function layerNorm<T extends tf.Tensor>(store: ParamStore, prefix: string, x: T, eps = 1e-5): T {
  const w = `${prefix}.weight`;
  if (!store.has(w)) return layerNormWith(x, undefined, undefined, eps);
  return layerNormWith(x, store.get(w) as tf.Tensor1D, store.get(`${prefix}.bias`) as tf.Tensor1D, eps);
}
