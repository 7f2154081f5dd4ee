/**
 * Dense-layer primitives for the whole model zoo, written for tfjs-backend-wasm's fast path.
 *
 * wasm's XNNPACK matmul serves only plain 2-D `matMul(a, b)` without transpose flags (batch 1);
 * transposed or batched matmuls fall back to a scalar loop, 11-17x slower per FLOP (measured in
 * bench/backend.ts). tfjs's own matMul gradient uses transpose flags (7-9x slower fwd+bwd), so
 * both the forward and the gradients here use plain 2-D matMuls, transposing explicitly first
 * (`tf.transpose` is an O(size) copy next to the O(n^3) product).
 *
 * Weight layout: `weight` is [out, in], the PyTorch/fairseq layout, so checkpoints map 1:1.
 *   y = x Wᵀ + b            forward:  transpose W (in*out copy), 1 matmul with the bias fused in
 *   dx = dy W               plain, no transpose
 *   dW = dyᵀ x              transpose dy (N*out copy)
 *   db = column sums of dy  = row sums of dyᵀ (reuses that transpose; 10x faster than sum(dy, 0))
 * Storing W as [in, out] would save the forward transpose but need transposes of W and x in the
 * backward pass: the same amount of copying per training step. Measured at [1024x256]->[1024]
 * (interleaved runs): fwd+bwd equal within noise (+-5%); forward only ~10% slower with [out, in]
 * (the 2.3 ms transpose plus XNNPACK repacking, of ~27 ms; tfjs caches packed weights per `b`
 * tensor, and a fresh Wᵀ misses that cache). Not worth breaking the 1:1 checkpoint mapping;
 * inference-heavy code can pre-transpose a weight once and call `matmul2d` directly.
 *
 * With the native CPU kernels (src/backend/native_kernels.ts: OpenBLAS sgemm honours transpose
 * flags at full speed) the explicit transposes are pure overhead, so that path uses the flags:
 *   y = x Wᵀ + b  one GEMM with transB and the bias added in the kernel
 *   dx = dy W     dW = dyᵀ x (transA)     db = column sums of dy (a native reduction)
 * Both paths compute the same values; `nativeMatMulActive()` picks one per call.
 *
 * Edge cases: tfjs 4.22 wasm returns garbage (not zeros) for a matmul with K = 0 and for Sum over
 * an empty axis, and prints an XNNPACK error to stdout for M or N = 0, so empty dimensions are
 * handled without calling the kernels.
 */
import * as tf from '@tensorflow/tfjs';
import { nativeMatMulActive } from '../backend/native_kernels.js';

/** Plain 2-D product a·b ([n,k] x [k,m]); both gradients use plain 2-D products too
 *  (da = dy·bᵀ, db = aᵀ·dy with explicit transposes). */
export function matmul2d(a: tf.Tensor2D, b: tf.Tensor2D): tf.Tensor2D {
  checkRank2(a, 'matmul2d: a');
  checkRank2(b, 'matmul2d: b');
  if (a.shape[1] !== b.shape[0]) {
    throw new Error(`matmul2d: inner dimensions differ: a [${a.shape.join(', ')}] x b [${b.shape.join(', ')}]`);
  }
  return matmul2dGrad(a, b);
}

/** y = x·Wᵀ + b with x [N, in], weight [out, in] (fairseq layout), bias [out]. */
export function linear(x: tf.Tensor2D, weight: tf.Tensor2D, bias?: tf.Tensor1D): tf.Tensor2D {
  checkRank2(x, 'linear: x');
  checkRank2(weight, 'linear: weight');
  if (x.shape[1] !== weight.shape[1]) {
    throw new Error(`linear: x is [${x.shape.join(', ')}] but weight is [${weight.shape.join(', ')}] ([out, in]); in must match`);
  }
  if (bias !== undefined) {
    if (bias.rank !== 1 || bias.shape[0] !== weight.shape[0]) {
      throw new Error(`linear: bias must be [${weight.shape[0]}], got [${bias.shape.join(', ')}]`);
    }
    return linearBiasGrad(x, weight, bias);
  }
  return linearNoBiasGrad(x, weight);
}

/** `linear` over the last axis of x [..., in] -> [..., out] (reshapes are free in tfjs). */
export function linearNd(x: tf.Tensor, weight: tf.Tensor2D, bias?: tf.Tensor1D): tf.Tensor {
  if (x.rank === 2) return linear(x as tf.Tensor2D, weight, bias);
  if (x.rank < 1) throw new Error('linearNd: x must have rank >= 1');
  const inDim = x.shape[x.rank - 1]!;
  const lead = x.shape.slice(0, -1);
  return tf.tidy(() => {
    const y = linear(tf.reshape(x, [-1, inDim]) as tf.Tensor2D, weight, bias);
    return tf.reshape(y, [...lead, weight.shape[0]]);
  });
}

function checkRank2(t: tf.Tensor, what: string): void {
  if (t.rank !== 2) throw new Error(`${what} must be 2-D, got shape [${t.shape.join(', ')}]`);
}

/** Plain matmul, except that any empty dimension yields zeros without calling the kernel: wasm
 *  returns uninitialised memory for K == 0, and XNNPACK rejects M/N == 0 with a message that tfjs
 *  prints to stdout. */
function mm(a: tf.Tensor2D, b: tf.Tensor2D): tf.Tensor2D {
  if (a.shape[0] === 0 || a.shape[1] === 0 || b.shape[1] === 0) return tf.zeros([a.shape[0], b.shape[1]]);
  return tf.matMul(a, b);
}

/** op(a)·op(b) with transpose flags (native path only), zeros for empty dimensions. */
function mmT(a: tf.Tensor2D, b: tf.Tensor2D, ta: boolean, tb: boolean): tf.Tensor2D {
  const m = ta ? a.shape[1] : a.shape[0];
  const k = ta ? a.shape[0] : a.shape[1];
  const n = tb ? b.shape[0] : b.shape[1];
  if (m === 0 || k === 0 || n === 0) return tf.zeros([m, n]);
  return tf.matMul(a, b, ta, tb);
}

/** Column sums of a [N, M] matrix given its transpose [M, N]; zeros when N == 0. */
function colSumsFromTransposed(t: tf.Tensor2D): tf.Tensor1D {
  if (t.shape[1] === 0) return tf.zeros([t.shape[0]]);
  return tf.sum(t, 1);
}

// customGrad hands inputs typed as Tensor | GradSaveFunc; the casts below only restore what we
// pass in (tensors, then the save function last).
type Save = tf.GradSaveFunc;

const matmul2dGrad = tf.customGrad((aIn: tf.Tensor | Save, bIn: tf.Tensor | Save, saveIn: tf.Tensor | Save) => {
  const a = aIn as tf.Tensor2D;
  const b = bIn as tf.Tensor2D;
  (saveIn as Save)([a, b]);
  return {
    value: mm(a, b),
    gradFunc: (dy: tf.Tensor2D, saved: tf.Tensor[]) => {
      const [sa, sb] = saved as [tf.Tensor2D, tf.Tensor2D];
      if (nativeMatMulActive()) return [mmT(dy, sb, false, true), mmT(sa, dy, true, false)];
      return [mm(dy, tf.transpose(sb)), mm(tf.transpose(sa), dy)];
    },
  };
}) as (a: tf.Tensor2D, b: tf.Tensor2D) => tf.Tensor2D;

function linearForward(x: tf.Tensor2D, w: tf.Tensor2D): tf.Tensor2D {
  if (nativeMatMulActive()) return mmT(x, w, false, true);
  return mm(x, tf.transpose(w));
}

/** With a bias, the fused kernel adds it inside the XNNPACK GEMM: ~20% faster than matMul + add
 *  (bench/backend.ts). tfjs 4.22's wasm _FusedMatMul is wrong with transposes or batch > 1 (see
 *  docs/backend-notes.md); neither happens here. */
function linearForwardBias(x: tf.Tensor2D, w: tf.Tensor2D, b: tf.Tensor1D): tf.Tensor2D {
  if (x.shape[0] === 0 || x.shape[1] === 0 || w.shape[0] === 0) return tf.add(linearForward(x, w), b) as tf.Tensor2D;
  // The native _FusedMatMul handles transposes (stock wasm's is wrong with them).
  if (nativeMatMulActive()) return tf.fused.matMul({ a: x, b: w, transposeB: true, bias: b }) as tf.Tensor2D;
  return tf.fused.matMul({ a: x, b: tf.transpose(w), bias: b }) as tf.Tensor2D;
}

/** [dx, dW, db] for y = x Wᵀ (+ b); db only when `withBias`. */
function linearBackward(dy: tf.Tensor2D, x: tf.Tensor2D, w: tf.Tensor2D, withBias: boolean): tf.Tensor[] {
  if (nativeMatMulActive()) {
    const grads: tf.Tensor[] = [mm(dy, w), mmT(dy, x, true, false)];
    // Sum over axis 0 is a native column reduction here (no transpose needed).
    if (withBias) grads.push(dy.shape[0] === 0 ? tf.zeros([dy.shape[1]]) : tf.sum(dy, 0));
    return grads;
  }
  const dyT = tf.transpose(dy); // [out, N]
  const grads: tf.Tensor[] = [mm(dy, w), mm(dyT, x)];
  if (withBias) grads.push(colSumsFromTransposed(dyT));
  return grads;
}

const linearNoBiasGrad = tf.customGrad((xIn: tf.Tensor | Save, wIn: tf.Tensor | Save, saveIn: tf.Tensor | Save) => {
  const x = xIn as tf.Tensor2D;
  const w = wIn as tf.Tensor2D;
  (saveIn as Save)([x, w]);
  return {
    value: linearForward(x, w),
    gradFunc: (dy: tf.Tensor2D, saved: tf.Tensor[]) => {
      const [sx, sw] = saved as [tf.Tensor2D, tf.Tensor2D];
      return linearBackward(dy, sx, sw, false);
    },
  };
}) as (x: tf.Tensor2D, w: tf.Tensor2D) => tf.Tensor2D;

const linearBiasGrad = tf.customGrad(
  (xIn: tf.Tensor | Save, wIn: tf.Tensor | Save, bIn: tf.Tensor | Save, saveIn: tf.Tensor | Save) => {
    const x = xIn as tf.Tensor2D;
    const w = wIn as tf.Tensor2D;
    const b = bIn as tf.Tensor1D;
    (saveIn as Save)([x, w]);
    return {
      value: linearForwardBias(x, w, b),
      gradFunc: (dy: tf.Tensor2D, saved: tf.Tensor[]) => {
        const [sx, sw] = saved as [tf.Tensor2D, tf.Tensor2D];
        return linearBackward(dy, sx, sw, true);
      },
    };
  },
) as (x: tf.Tensor2D, w: tf.Tensor2D, b: tf.Tensor1D) => tf.Tensor2D;
