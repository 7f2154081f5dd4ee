/**
 * Position-wise feed-forward block of a fairseq Transformer layer: fc1 -> activation ->
 * activation dropout -> fc2 (the residual, dropout and layer norm live in the layer).
 * Parameters `<prefix>.fc1.{weight,bias}` [F, C] and `<prefix>.fc2.{weight,bias}` [C, F].
 *
 * Init: fairseq v0.10.2 builds fc1/fc2 as plain nn.Linear, so PyTorch's default
 * U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for weight and bias; BERT init: N(0, 0.02), zero bias.
 */
import * as tf from '@tensorflow/tfjs';
import { dropout, type ForwardContext } from './dropout.js';
import { normal, torchLinearBias, torchLinearWeight, zeros, type InitStyle, type ParamStore } from './params.js';
import { initProjection, project, type ProjectionInit } from './projection.js';

export type ActivationFn = 'relu' | 'gelu';

export function activation<T extends tf.Tensor>(x: T, fn: ActivationFn): T {
  switch (fn) {
    case 'relu':
      return tf.relu(x);
    case 'gelu':
      // Exact GELU as torch.nn.functional.gelu: x * Phi(x) = x/2 * (1 + erf(x / sqrt 2)).
      return tf.tidy(() => tf.mul(tf.mul(x, 0.5), tf.add(1, tf.erf(tf.mul(x, Math.SQRT1_2)))) as T);
    default: {
      const never: never = fn;
      throw new Error(`unknown activation ${String(never)}`);
    }
  }
}

/** nn.Linear's default init, or BERT's. */
export function linearInit(inDim: number, style: InitStyle): ProjectionInit {
  return style === 'bert'
    ? { weight: normal(0.02), bias: zeros }
    : { weight: torchLinearWeight(inDim), bias: torchLinearBias(inDim) };
}

export function initFfn(store: ParamStore, prefix: string, dim: number, hidden: number, style: InitStyle = 'fairseq'): void {
  initProjection(store, `${prefix}.fc1`, dim, hidden, linearInit(dim, style));
  initProjection(store, `${prefix}.fc2`, hidden, dim, linearInit(hidden, style));
}

export interface FfnOptions {
  activationFn: ActivationFn;
  activationDropout: number;
}

/** x [N, C] -> [N, C]. */
export function ffn(store: ParamStore, prefix: string, x: tf.Tensor2D, opts: FfnOptions, ctx: ForwardContext): tf.Tensor2D {
  return tf.tidy(() => {
    // A later perf pass could fuse bias + activation into the fc1 GEMM.
    let h = activation(project(store, `${prefix}.fc1`, x), opts.activationFn); // [N, F]
    h = dropout(h, opts.activationDropout, ctx);
    return project(store, `${prefix}.fc2`, h); // [N, C]
  });
}
