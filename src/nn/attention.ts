/**
 * Multi-head attention as fairseq v0.10.2 `modules/multihead_attention.py`, batch-first.
 *
 * Parameters under a prefix such as `decoder.layers.0.encoder_attn`: `q_proj`, `k_proj`,
 * `v_proj`, `out_proj` (each `.weight` [C, C_in] and `.bias` [C]). q is scaled by
 * head_dim^-0.5 after its projection, bias included, as fairseq does. Init as fairseq:
 * xavier_uniform with gain 1/sqrt(2) for q/k/v when key/value dims equal the model dim
 * (gain 1 otherwise), nn.Linear's default uniform for their biases, xavier_uniform for out_proj
 * with a zero bias; BERT init: N(0, 0.02) weights, zero biases.
 *
 * Masks are additive biases broadcastable to [B, H, T, S], built once per forward with
 * `paddingBias` / `causalBias` and shared by all layers. Masked scores get -1e9 rather than
 * -inf, so a fully masked row gives a uniform (not NaN) distribution; masked keys still get
 * exactly zero weight (exp underflows).
 *
 * Incremental decoding keeps keys and values per layer as [B, H, S, D]: appending a step is a
 * concat on axis 2, reordering beams a gather on axis 0.
 *
 * Perf notes for a later pass: the two batched matmuls ([B*H, T, D] x [B*H, S, D]^T) run on
 * tfjs-wasm's slow path (see docs/backend-notes.md); the head split/merge transposes and the
 * separate q/k/v GEMMs (one [3C, C] GEMM for self-attention) and the q scaling (foldable into
 * q_proj) are the obvious fusions.
 */
import * as tf from '@tensorflow/tfjs';
import { DifformerError } from '../errors.js';
import { dropout, type ForwardContext } from './dropout.js';
import { normal, tidyObject, torchLinearBias, xavierUniform, zeros, type InitStyle, type ParamStore } from './params.js';
import { initProjection, project } from './projection.js';

/** Added to masked attention scores. */
export const MASK_VALUE = -1e9;

export interface AttentionInitOptions {
  embedDim: number;
  numHeads: number;
  /** Key input dim (default embedDim). */
  kdim?: number;
  /** Value input dim (default embedDim). */
  vdim?: number;
  init?: InitStyle;
}

export function initMultiheadAttention(store: ParamStore, prefix: string, opts: AttentionInitOptions): void {
  const { embedDim, numHeads } = opts;
  if (embedDim % numHeads !== 0) {
    throw new DifformerError('DIFFORMER_BAD_OPTION', `attention dim ${embedDim} is not divisible by ${numHeads} heads (${prefix})`);
  }
  const kdim = opts.kdim ?? embedDim;
  const vdim = opts.vdim ?? embedDim;
  if (opts.init === 'bert') {
    const bert = { weight: normal(0.02), bias: zeros };
    initProjection(store, `${prefix}.k_proj`, kdim, embedDim, bert);
    initProjection(store, `${prefix}.v_proj`, vdim, embedDim, bert);
    initProjection(store, `${prefix}.q_proj`, embedDim, embedDim, bert);
    initProjection(store, `${prefix}.out_proj`, embedDim, embedDim, bert);
    return;
  }
  // "Empirically observed the convergence to be much better with the scaled initialization" (fairseq).
  const gain = kdim === embedDim && vdim === embedDim ? Math.SQRT1_2 : 1;
  initProjection(store, `${prefix}.k_proj`, kdim, embedDim, { weight: xavierUniform(gain), bias: torchLinearBias(kdim) });
  initProjection(store, `${prefix}.v_proj`, vdim, embedDim, { weight: xavierUniform(gain), bias: torchLinearBias(vdim) });
  initProjection(store, `${prefix}.q_proj`, embedDim, embedDim, { weight: xavierUniform(gain), bias: torchLinearBias(embedDim) });
  initProjection(store, `${prefix}.out_proj`, embedDim, embedDim, { weight: xavierUniform(1), bias: zeros });
}

/** Projected keys and values, split into heads. */
export interface KeyValue {
  key: tf.Tensor4D; // [B, H, S, D]
  value: tf.Tensor4D; // [B, H, S, D]
}

/** Project x [B, S, C_in] with `<prefix>.<name>` and split heads -> [B, H, S, D]. */
function projectHeads(store: ParamStore, name: string, x: tf.Tensor3D, numHeads: number): tf.Tensor4D {
  const [b, s, cIn] = x.shape;
  const y = project(store, name, tf.reshape(x, [b * s, cIn])); // [B*S, C]
  const d = y.shape[1] / numHeads;
  return tf.transpose(tf.reshape(y, [b, s, numHeads, d]), [0, 2, 1, 3]); // [B, H, S, D]
}

/** Keys and values of `x` [B, S, C] for the attention under `prefix` (precomputed once for cross-attention). */
export function projectKeyValue(store: ParamStore, prefix: string, x: tf.Tensor3D, numHeads: number): KeyValue {
  return tf.tidy(() => ({
    key: projectHeads(store, `${prefix}.k_proj`, x, numHeads),
    value: projectHeads(store, `${prefix}.v_proj`, x, numHeads),
  }));
}

export interface AttendOptions {
  numHeads: number;
  /** Additive bias broadcastable to [B, H, T, S] (padding and/or causal masks). */
  bias?: tf.Tensor;
  /** Dropout on attention probabilities (fairseq --attention-dropout). */
  dropout: number;
}

/** Attention probabilities softmax(q k^T / sqrt(D) + bias): query [B, T, C] -> [B, H, T, S]. */
export function attentionProbs(store: ParamStore, prefix: string, query: tf.Tensor3D, kv: KeyValue, opts: AttendOptions): tf.Tensor4D {
  return tf.tidy(() => {
    const [b, t] = query.shape;
    const [, h, s, d] = kv.key.shape;
    const q = tf.mul(projectHeads(store, `${prefix}.q_proj`, query, opts.numHeads), d ** -0.5); // [B, H, T, D]
    const q3 = tf.reshape(q, [b * h, t, d]); // [B*H, T, D]
    const k3 = tf.reshape(kv.key, [b * h, s, d]); // [B*H, S, D]
    let scores: tf.Tensor4D = tf.reshape(tf.matMul(q3, k3, false, true), [b, h, t, s]); // [B, H, T, S]
    if (opts.bias !== undefined) scores = tf.add(scores, opts.bias);
    return tf.softmax(scores);
  });
}

/** Attention of query [B, T, C] over precomputed keys/values -> [B, T, C] (after out_proj). */
export function attend(
  store: ParamStore,
  prefix: string,
  query: tf.Tensor3D,
  kv: KeyValue,
  opts: AttendOptions,
  ctx: ForwardContext,
): tf.Tensor3D {
  return tf.tidy(() => {
    const [b, t, c] = query.shape;
    const [, h, s, d] = kv.value.shape;
    const probs = dropout(attentionProbs(store, prefix, query, kv, opts), opts.dropout, ctx); // [B, H, T, S]
    const v3 = tf.reshape(kv.value, [b * h, s, d]); // [B*H, S, D]
    const ctx3 = tf.matMul(tf.reshape(probs, [b * h, t, s]), v3); // [B*H, T, D]
    const merged = tf.transpose(tf.reshape(ctx3, [b, h, t, d]), [0, 2, 1, 3]); // [B, T, H, D]
    const out = project(store, `${prefix}.out_proj`, tf.reshape(merged, [b * t, h * d])); // [B*T, C]
    return tf.reshape(out, [b, t, c]); // [B, T, C]
  });
}

/** Full attention: self-attention when `keyInput` is null, else over keyInput [B, S, C]. */
export function multiheadAttention(
  store: ParamStore,
  prefix: string,
  query: tf.Tensor3D,
  keyInput: tf.Tensor3D | null,
  opts: AttendOptions,
  ctx: ForwardContext,
): tf.Tensor3D {
  return tf.tidy(() => attend(store, prefix, query, projectKeyValue(store, prefix, keyInput ?? query, opts.numHeads), opts, ctx));
}

/**
 * One incremental self-attention step: x [B, 1, C] attends to the cached keys/values plus its
 * own. Returns the output and the extended cache (new tensors; the caller disposes the old).
 */
export function selfAttentionStep(
  store: ParamStore,
  prefix: string,
  x: tf.Tensor3D,
  cache: KeyValue | null,
  opts: AttendOptions,
  ctx: ForwardContext,
): { out: tf.Tensor3D; cache: KeyValue } {
  return tidyObject(() => {
    const step = projectKeyValue(store, prefix, x, opts.numHeads); // [B, H, 1, D] each
    const kv: KeyValue =
      cache === null
        ? step
        : { key: tf.concat([cache.key, step.key], 2), value: tf.concat([cache.value, step.value], 2) }; // [B, H, S+1, D]
    return { out: attend(store, prefix, x, kv, opts, ctx), cache: kv };
  });
}

/** Reorder cached keys/values along the batch axis (beam search). */
export function reorderKeyValue(kv: KeyValue, indices: tf.Tensor1D): KeyValue {
  return tf.tidy(() => ({ key: tf.gather(kv.key, indices, 0), value: tf.gather(kv.value, indices, 0) }));
}

/** Key padding mask [B, S] (nonzero/true = pad) -> additive bias [B, 1, 1, S]. */
export function paddingBias(padMask: tf.Tensor2D): tf.Tensor4D {
  return tf.tidy(() => {
    const [b, s] = padMask.shape;
    const m = padMask.dtype === 'float32' ? padMask : tf.cast(padMask, 'float32');
    return tf.reshape(tf.mul(tf.cast(tf.notEqual(m, 0), 'float32'), MASK_VALUE), [b, 1, 1, s]); // [B, 1, 1, S]
  });
}

/**
 * Causal bias [1, 1, T, S]: query i (the last T of S positions) may see keys j <= i + (S - T),
 * fairseq's buffered_future_mask for S = T.
 */
export function causalBias(t: number, s = t): tf.Tensor4D {
  const values = new Float32Array(t * s);
  const offset = s - t;
  for (let i = 0; i < t; i++) for (let j = i + offset + 1; j < s; j++) values[i * s + j] = MASK_VALUE;
  return tf.tensor4d(values, [1, 1, t, s]);
}
