/**
 * The Transformer encoder that the Transformer, CMLM and Difformer models share (fairseq
 * v0.10.2 `TransformerEncoder`), as plain functions over a ParamStore:
 *
 *   x = P_in(s E[src]) + pos(src); dropout; layers; LN if normalize_before
 *
 * P_in (`encoder.project_in_dim`, bias-free) exists only when the token table is narrower than
 * the layers (Difformer's latent width); the Transformer and CMLM have none. Parameter names
 * are fairseq's: `encoder.embed_tokens.weight`, `encoder.embed_positions.*`,
 * `encoder.layers.N.*`, `encoder.layer_norm.*`.
 */
import * as tf from '@tensorflow/tfjs';
import { paddingBias } from './attention.js';
import { dropout, type ForwardContext } from './dropout.js';
import { embed, initEmbedding } from './embedding.js';
import type { ActivationFn } from './ffn.js';
import { initLayerNorm, layerNorm } from './layer_norm.js';
import { linearNd } from './linear.js';
import { tidyObject, torchLinearWeight, type InitStyle, type ParamStore } from './params.js';
import { embedPositions, initPositions } from './positions.js';
import { initProjection, type ProjectionInit } from './projection.js';
import { encoderLayer, initEncoderLayer, type LayerOptions } from './transformer_layer.js';

/** The option fields every model here has for its layers (fairseq's flag names). */
export interface LayerFields {
  encoderFfnEmbedDim: number;
  encoderAttentionHeads: number;
  decoderFfnEmbedDim: number;
  decoderAttentionHeads: number;
  dropout: number;
  attentionDropout: number;
  activationDropout: number;
  activationFn: ActivationFn;
}

/** Fields of the Transformer-style options (Transformer, CMLM): per-side width and LN placement. */
export interface TransformerFields extends LayerFields {
  encoderEmbedDim: number;
  encoderLayers: number;
  encoderNormalizeBefore: boolean;
  encoderLearnedPos: boolean;
  decoderEmbedDim: number;
  decoderNormalizeBefore: boolean;
  noTokenPositionalEmbeddings: boolean;
  maxSourcePositions: number;
}

/**
 * One side's LayerOptions. Width and LN placement are arguments because Difformer has one
 * model width for both sides and is always post-LN, where the Transformer reads them per side.
 */
export function layerOptions(o: LayerFields, side: 'encoder' | 'decoder', embedDim: number, normalizeBefore: boolean): LayerOptions {
  const enc = side === 'encoder';
  return {
    embedDim,
    ffnEmbedDim: enc ? o.encoderFfnEmbedDim : o.decoderFfnEmbedDim,
    attentionHeads: enc ? o.encoderAttentionHeads : o.decoderAttentionHeads,
    normalizeBefore,
    dropout: o.dropout,
    attentionDropout: o.attentionDropout,
    activationDropout: o.activationDropout,
    activationFn: o.activationFn,
  };
}

export function encoderLayerOptions(o: TransformerFields): LayerOptions {
  return layerOptions(o, 'encoder', o.encoderEmbedDim, o.encoderNormalizeBefore);
}

export function decoderLayerOptions(o: TransformerFields): LayerOptions {
  return layerOptions(o, 'decoder', o.decoderEmbedDim, o.decoderNormalizeBefore);
}

export interface EncoderOptions {
  /** Width of `encoder.embed_tokens`; when it differs from `layer.embedDim`, P_in maps it up. */
  tokenDim: number;
  layers: number;
  /** Every layer's options; `normalizeBefore` also adds the final `encoder.layer_norm`. */
  layer: LayerOptions;
  /** false: no position embeddings at all (--no-token-positional-embeddings). */
  positions: boolean;
  learnedPos: boolean;
  maxPositions: number;
}

/** The encoder of the Transformer-style options (Transformer, CMLM). */
export function transformerEncoderOptions(o: TransformerFields): EncoderOptions {
  return {
    tokenDim: o.encoderEmbedDim,
    layers: o.encoderLayers,
    layer: encoderLayerOptions(o),
    positions: !o.noTokenPositionalEmbeddings,
    learnedPos: o.encoderLearnedPos,
    maxPositions: o.maxSourcePositions,
  };
}

/** What the decoders attend to (owned by the caller: dispose both). */
export interface EncoderOut {
  out: tf.Tensor3D; // [B, S, C]
  /** 1 where the source is padding, else 0. [B, S] float32. */
  paddingMask: tf.Tensor2D;
}

/** Gather encoder outputs by batch indices (e.g. expand each sentence to its beams). */
export function reorderEncoderOut(encOut: EncoderOut, indices: tf.Tensor1D): EncoderOut {
  return tidyObject(() => ({ out: tf.gather(encOut.out, indices, 0), paddingMask: tf.gather(encOut.paddingMask, indices, 0) }));
}

export function disposeEncoderOut(encOut: EncoderOut): void {
  tf.dispose([encOut.out, encOut.paddingMask]);
}

export interface EncoderInit {
  /** Positions and layers (and the token table unless `tokens` is given); default 'fairseq'. */
  style?: InitStyle;
  /** The token table's own style: Difformer's decoder BERT init also reaches a table it shares. */
  tokens?: InitStyle;
  /** P_in's init when it exists; default nn.Linear's, bias-free. */
  projectIn?: ProjectionInit;
}

/**
 * Create the encoder's parameters in fairseq's module order. The store's RNG draws initial
 * values in creation order, so this order is part of every seeded run's initial weights.
 */
export function initEncoder(store: ParamStore, o: EncoderOptions, dict: { size: number; padIndex: number }, init: EncoderInit = {}): void {
  const style = init.style ?? 'fairseq';
  const dim = o.layer.embedDim;
  initEmbedding(store, 'encoder.embed_tokens.weight', dict.size, o.tokenDim, dict.padIndex, init.tokens ?? style);
  if (o.tokenDim !== dim) {
    initProjection(store, 'encoder.project_in_dim', o.tokenDim, dim, init.projectIn ?? { weight: torchLinearWeight(o.tokenDim), bias: null });
  }
  if (o.positions) {
    initPositions(store, 'encoder.embed_positions', { maxPositions: o.maxPositions, dim, padIndex: dict.padIndex, learned: o.learnedPos, init: style });
  }
  for (let i = 0; i < o.layers; i++) initEncoderLayer(store, `encoder.layers.${i}`, o.layer, style);
  if (o.layer.normalizeBefore) initLayerNorm(store, 'encoder.layer_norm', dim);
}

/**
 * srcTokens [B, S] int32 (right- or left-padded) -> encoder output and padding mask; the
 * caller disposes both. `scale` multiplies the token embeddings (sqrt(tokenDim) in fairseq).
 * Dropout draws from ctx.rng: the embedding mask first, then each layer's in order.
 */
export function runEncoder(store: ParamStore, o: EncoderOptions, srcTokens: tf.Tensor2D, padIndex: number, ctx: ForwardContext, scale: number): EncoderOut {
  return tidyObject(() => {
    let x = embed(store.get('encoder.embed_tokens.weight') as tf.Tensor2D, srcTokens, scale); // [B, S, D]
    if (o.tokenDim !== o.layer.embedDim) x = linearNd(x, store.get('encoder.project_in_dim.weight') as tf.Tensor2D) as tf.Tensor3D; // [B, S, C]
    if (o.positions) x = tf.add(x, embedPositions(store, 'encoder.embed_positions', srcTokens, padIndex));
    x = dropout(x, o.layer.dropout, ctx);
    const paddingMask = tf.cast(tf.equal(srcTokens, padIndex), 'float32') as tf.Tensor2D; // [B, S]
    const bias = paddingBias(paddingMask); // [B, 1, 1, S]
    for (let i = 0; i < o.layers; i++) x = encoderLayer(store, `encoder.layers.${i}`, x, bias, o.layer, ctx);
    if (o.layer.normalizeBefore) x = layerNorm(store, 'encoder.layer_norm', x);
    return { out: x, paddingMask };
  });
}
