/**
 * fairseq v0.10.2 Transformer encoder and decoder layers (`modules/transformer_layer.py`),
 * batch-first, post-LN by default and pre-LN with `normalizeBefore`:
 *
 *   post-LN: x = LN(x + Dropout(Sublayer(x)))       pre-LN: x = x + Dropout(Sublayer(LN(x)))
 *
 * Sublayers in order: self_attn (+ self_attn_layer_norm), encoder_attn (+
 * encoder_attn_layer_norm, decoder only), fc1/fc2 (+ final_layer_norm). Parameter names are
 * fairseq's under the layer prefix, e.g. `decoder.layers.3.encoder_attn.k_proj.weight`.
 *
 * The decoder layer also runs one step at a time for beam search: `decoderLayerStep` keeps
 * the self-attention keys/values of earlier steps and reuses the cross-attention keys/values
 * projected once from the encoder output.
 */
import * as tf from '@tensorflow/tfjs';
import {
  attend,
  initMultiheadAttention,
  multiheadAttention,
  projectKeyValue,
  selfAttentionStep,
  type KeyValue,
} from './attention.js';
import { addDropout, type ForwardContext } from './dropout.js';
import { ffn, initFfn, type ActivationFn } from './ffn.js';
import { initLayerNorm, layerNorm } from './layer_norm.js';
import { tidyObject, type InitStyle, type ParamStore } from './params.js';

export interface LayerOptions {
  embedDim: number;
  ffnEmbedDim: number;
  attentionHeads: number;
  normalizeBefore: boolean;
  dropout: number;
  attentionDropout: number;
  activationDropout: number;
  activationFn: ActivationFn;
}

export function initEncoderLayer(store: ParamStore, prefix: string, o: LayerOptions, init: InitStyle = 'fairseq'): void {
  initMultiheadAttention(store, `${prefix}.self_attn`, { embedDim: o.embedDim, numHeads: o.attentionHeads, init });
  initLayerNorm(store, `${prefix}.self_attn_layer_norm`, o.embedDim);
  initFfn(store, prefix, o.embedDim, o.ffnEmbedDim, init);
  initLayerNorm(store, `${prefix}.final_layer_norm`, o.embedDim);
}

export function initDecoderLayer(
  store: ParamStore,
  prefix: string,
  o: LayerOptions,
  init: InitStyle = 'fairseq',
  encoderEmbedDim = o.embedDim,
): void {
  initMultiheadAttention(store, `${prefix}.self_attn`, { embedDim: o.embedDim, numHeads: o.attentionHeads, init });
  initLayerNorm(store, `${prefix}.self_attn_layer_norm`, o.embedDim);
  initMultiheadAttention(store, `${prefix}.encoder_attn`, {
    embedDim: o.embedDim,
    numHeads: o.attentionHeads,
    kdim: encoderEmbedDim,
    vdim: encoderEmbedDim,
    init,
  });
  initLayerNorm(store, `${prefix}.encoder_attn_layer_norm`, o.embedDim);
  initFfn(store, prefix, o.embedDim, o.ffnEmbedDim, init);
  initLayerNorm(store, `${prefix}.final_layer_norm`, o.embedDim);
}

/** Residual around one sublayer, with the layer norm before or after as configured. */
function residualBlock(
  store: ParamStore,
  lnPrefix: string,
  x: tf.Tensor3D,
  o: LayerOptions,
  ctx: ForwardContext,
  sublayer: (h: tf.Tensor3D) => tf.Tensor3D,
): tf.Tensor3D {
  const h = o.normalizeBefore ? layerNorm(store, lnPrefix, x) : x;
  const y = addDropout(x, sublayer(h), o.dropout, ctx);
  return o.normalizeBefore ? y : layerNorm(store, lnPrefix, y);
}

function ffnSublayer(store: ParamStore, prefix: string, o: LayerOptions, ctx: ForwardContext) {
  return (h: tf.Tensor3D): tf.Tensor3D => {
    const [b, t, c] = h.shape;
    const y = ffn(store, prefix, tf.reshape(h, [b * t, c]), o, ctx); // [B*T, C]
    return tf.reshape(y, [b, t, c]); // [B, T, C]
  };
}

/** x [B, S, C]; selfAttnBias broadcastable to [B, H, S, S] (encoder padding). */
export function encoderLayer(
  store: ParamStore,
  prefix: string,
  x: tf.Tensor3D,
  selfAttnBias: tf.Tensor | undefined,
  o: LayerOptions,
  ctx: ForwardContext,
): tf.Tensor3D {
  return tf.tidy(() => {
    const att = { numHeads: o.attentionHeads, bias: selfAttnBias, dropout: o.attentionDropout };
    x = residualBlock(store, `${prefix}.self_attn_layer_norm`, x, o, ctx, (h) =>
      multiheadAttention(store, `${prefix}.self_attn`, h, null, att, ctx),
    );
    return residualBlock(store, `${prefix}.final_layer_norm`, x, o, ctx, ffnSublayer(store, prefix, o, ctx));
  });
}

/** What the decoder layers attend to on the encoder side. */
export interface CrossAttentionInput {
  /** Encoder output [B, S, C_enc], projected by each layer; or per-layer precomputed keys/values. */
  encoderOut?: tf.Tensor3D;
  kv?: KeyValue;
  /** Encoder padding bias [B, 1, 1, S]. */
  bias?: tf.Tensor;
}

function crossKv(store: ParamStore, prefix: string, cross: CrossAttentionInput, numHeads: number): KeyValue {
  if (cross.kv !== undefined) return cross.kv;
  if (cross.encoderOut === undefined) throw new Error(`${prefix}: cross-attention needs encoderOut or kv`);
  return projectKeyValue(store, `${prefix}.encoder_attn`, cross.encoderOut, numHeads);
}

/**
 * Full decoder layer over x [B, T, C]: self-attention with `selfAttnBias` (causal and/or
 * padding; none for a bidirectional NAT/diffusion decoder), then cross-attention unless
 * `cross` is null.
 */
export function decoderLayer(
  store: ParamStore,
  prefix: string,
  x: tf.Tensor3D,
  selfAttnBias: tf.Tensor | undefined,
  cross: CrossAttentionInput | null,
  o: LayerOptions,
  ctx: ForwardContext,
): tf.Tensor3D {
  return tf.tidy(() => {
    const self = { numHeads: o.attentionHeads, bias: selfAttnBias, dropout: o.attentionDropout };
    x = residualBlock(store, `${prefix}.self_attn_layer_norm`, x, o, ctx, (h) =>
      multiheadAttention(store, `${prefix}.self_attn`, h, null, self, ctx),
    );
    x = crossSublayer(store, prefix, x, cross, o, ctx);
    return residualBlock(store, `${prefix}.final_layer_norm`, x, o, ctx, ffnSublayer(store, prefix, o, ctx));
  });
}

function crossSublayer(
  store: ParamStore,
  prefix: string,
  x: tf.Tensor3D,
  cross: CrossAttentionInput | null,
  o: LayerOptions,
  ctx: ForwardContext,
): tf.Tensor3D {
  if (cross === null) return x;
  const att = { numHeads: o.attentionHeads, bias: cross.bias, dropout: o.attentionDropout };
  return residualBlock(store, `${prefix}.encoder_attn_layer_norm`, x, o, ctx, (h) =>
    attend(store, `${prefix}.encoder_attn`, h, crossKv(store, prefix, cross, o.attentionHeads), att, ctx),
  );
}

/** Per-layer incremental state: self-attention keys/values so far (null before step 0). */
export interface DecoderLayerCache {
  self: KeyValue | null;
}

/**
 * One decoding step of a decoder layer: x [B, 1, C] is the newest position; `cross.kv` should
 * hold this layer's precomputed encoder keys/values. Returns the output and the extended
 * cache (new tensors; the caller disposes the old cache).
 */
export function decoderLayerStep(
  store: ParamStore,
  prefix: string,
  x: tf.Tensor3D,
  cache: DecoderLayerCache,
  cross: CrossAttentionInput | null,
  o: LayerOptions,
  ctx: ForwardContext,
): { out: tf.Tensor3D; cache: DecoderLayerCache } {
  return tidyObject(() => {
    const self = { numHeads: o.attentionHeads, dropout: o.attentionDropout };
    let selfKv: KeyValue | null = null;
    x = residualBlock(store, `${prefix}.self_attn_layer_norm`, x, o, ctx, (h) => {
      const r = selfAttentionStep(store, `${prefix}.self_attn`, h, cache.self, self, ctx);
      selfKv = r.cache;
      return r.out;
    });
    x = crossSublayer(store, prefix, x, cross, o, ctx);
    const out = residualBlock(store, `${prefix}.final_layer_norm`, x, o, ctx, ffnSublayer(store, prefix, o, ctx));
    return { out, cache: { self: selfKv } };
  });
}
