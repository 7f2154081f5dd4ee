/**
 * Named linear projections: `<prefix>.weight` [out, in] (PyTorch layout) and optional
 * `<prefix>.bias` [out], applied with `linear` from ./linear.js (plain 2-D matmuls, the fast
 * path on wasm). Callers reshape activations to [N, in] first.
 */
import * as tf from '@tensorflow/tfjs';
import { linear } from './linear.js';
import type { Init, ParamStore } from './params.js';

export interface ProjectionInit {
  weight: Init;
  /** null: no bias parameter. */
  bias: Init | null;
}

export function initProjection(store: ParamStore, prefix: string, inDim: number, outDim: number, init: ProjectionInit): void {
  store.create(`${prefix}.weight`, [outDim, inDim], init.weight);
  if (init.bias !== null) store.create(`${prefix}.bias`, [outDim], init.bias);
}

/** x [N, in] -> [N, out]. */
export function project(store: ParamStore, prefix: string, x: tf.Tensor2D): tf.Tensor2D {
  const b = `${prefix}.bias`;
  const bias = store.has(b) ? (store.get(b) as tf.Tensor1D) : undefined;
  return linear(x, store.get(`${prefix}.weight`) as tf.Tensor2D, bias);
}
